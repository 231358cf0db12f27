"""grpclib's ``Server``, which also closes the connections it accepted when it stops.

grpclib 0.4.9's ``Server.close`` stops listening and cancels running handlers but
leaves every accepted connection open until the client hangs up. A peer's
long-lived ``PushStream`` keeps its connection open indefinitely, so a node that
stopped (or a test that stops a node while its loop is closing) would leave those
sockets behind for the garbage collector to report.

A connection the kernel handed to asyncio just before ``close`` gets its protocol,
and then ``connection_made``, a loop iteration or two *after* it: ``close`` cannot
see it yet. The listening socket is closed only after those (asyncio 3.11 would
leak their sockets otherwise), they are hung up on as soon as they are made, and
``wait_closed`` waits until every connection ever accepted is gone, so the loop is
never closed with one still open.

Given ``limits``, every connection is a ``peer.net.h2_guard.GuardedProtocol``: message
sizes refused from their prefix, HTTP/2 settings, connection caps, idle timeout.
"""

from __future__ import annotations

import asyncio
import weakref
from ssl import SSLContext
from typing import Any, Final

from grpclib.protocol import H2Protocol
from grpclib.server import Handler
from grpclib.server import Server as _GrpclibServer

from peer.net.h2_guard import GuardedProtocol, TransportGuard, TransportLimits, coalesced

__all__ = ["TLS_HANDSHAKE_TIMEOUT", "Server"]

# How long wait_closed lets a hung-up connection send what it still has buffered
# before dropping it (a client that stopped reading would otherwise hold it open).
_FLUSH_GRACE: Final = 1.0
# Seconds a TLS connection may take to finish its handshake before it is closed.
TLS_HANDSHAKE_TIMEOUT: Final = 10.0


class _Tracked(H2Protocol):
    """A server connection that tells its ``Server`` when it is made and lost."""

    server: Server
    transport: asyncio.BaseTransport | None = None
    lost: bool = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport  # the real one: wait_closed may have to abort it
        super().connection_made(coalesced(transport))
        self.server._connection_made(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        super().connection_lost(exc)
        self.server._connection_lost()


class _PlainProtocol(_Tracked):
    pass


class _GuardedProtocol(_Tracked, GuardedProtocol):
    pass


class Server(_GrpclibServer):
    def __init__(self, *args: Any, limits: TransportLimits | None = None,
                 ssl: SSLContext | None = None, **kwargs: Any) -> None:
        self._ssl_context = ssl  # TLS on every start() (peer.net.tls)
        if limits is not None:
            kwargs.setdefault("config", limits.grpclib_config())
        super().__init__(*args, **kwargs)
        # Every protocol handed out, until it is garbage: one whose transport was
        # never created (a failed accept) drops out by itself.
        self._protocols: weakref.WeakSet[_Tracked] = weakref.WeakSet()
        self._closing = False
        self._some_lost = asyncio.Event()
        self.guard = TransportGuard(limits) if limits is not None else None

    async def start(self, host: str | None = None, port: int | None = None,
                    **kwargs: Any) -> None:
        ssl = kwargs.pop("ssl", self._ssl_context)
        if ssl is None or kwargs:
            await super().start(host, port, ssl=ssl, **kwargs)
            return
        # grpclib's start, with a bound on the TLS handshake: a connection counts
        # against the guard's caps only once it is made, i.e. after its handshake,
        # and asyncio would wait 60 s for one that never finishes.
        if self._server is not None:
            raise RuntimeError("Server is already started")
        self._server = await self._loop.create_server(
            self._protocol_factory, host, port or 0, ssl=ssl,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        self._server_closed_fut = self._loop.create_future()

    def _protocol_factory(self) -> H2Protocol:
        # grpclib's own factory, with its protocol class swapped for ours.
        self.__gc_step__()
        handler = Handler(self._mapping, self._codec, self._status_details_codec,
                          self.__dispatch__)
        self._handlers.add(handler)
        protocol: _Tracked
        if self.guard is None:
            protocol = _PlainProtocol(handler, self._config, self._h2_config)
        else:
            protocol = _GuardedProtocol(handler, self._config, self._h2_config, self.guard)
        protocol.server = self
        if self._closing:
            handler.close()
        self._protocols.add(protocol)
        return protocol

    def _connection_made(self, protocol: _Tracked) -> None:
        if self._closing:  # accepted just before close(): hang up at once
            protocol.connection.close()

    def _connection_lost(self) -> None:
        self._some_lost.set()

    def close(self) -> None:
        """Stop listening, cancel running handlers, and hang up on every client."""
        self._closing = True
        inner: Any = self._server
        if inner is None:
            raise RuntimeError("Server is not started")
        loop = inner.get_loop()
        for sock in inner.sockets:
            loop.remove_reader(sock.fileno())  # accept nothing more
        # Connections the kernel already handed over get their transport on the
        # loop's next turn. Python 3.11's asyncio leaks the socket of one whose server
        # closed before that (the transport cannot attach to a closed server, and
        # nothing closes it): close the server after them.
        loop.call_soon(self._close_after_accepts)
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)  # None before connection_made
            if connection is not None:
                connection.close()

    def _close_after_accepts(self) -> None:
        super().close()

    async def wait_closed(self) -> None:
        """Wait for the handlers to end and for every accepted connection to be gone."""
        await super().wait_closed()
        if not await self._all_lost_within(_FLUSH_GRACE):
            for protocol in self._open():
                if protocol.transport is not None:
                    protocol.transport.abort()  # type: ignore[attr-defined]
            await self._all_lost_within(_FLUSH_GRACE)

    def _open(self) -> list[_Tracked]:
        return [protocol for protocol in self._protocols if not protocol.lost]

    async def _all_lost_within(self, seconds: float) -> bool:
        # Waits on the connections' own connection_lost; the deadline only bounds a
        # client that never reads what is left to send.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self._open():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._some_lost.clear()
            try:
                await asyncio.wait_for(self._some_lost.wait(), left)
            except TimeoutError:
                return not self._open()
        return True

    @property
    def port(self) -> int:
        """The TCP port ``start`` bound: grpclib keeps its asyncio server private, and
        its sockets are the only way to learn which port ``port=0`` got."""
        inner: Any = self._server
        for sock in inner.sockets if inner is not None else ():
            port: int = sock.getsockname()[1]
            return port
        raise RuntimeError("the server has no listening socket")
