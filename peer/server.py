"""grpclib's ``Server``, which also closes the connections it accepted when it stops.

grpclib 0.4.9's ``Server.close`` stops listening and cancels running handlers but
leaves every accepted connection open until the client hangs up. A peer's
long-lived ``PushStream`` keeps its connection open indefinitely, so a node that
stopped (or a test that stops a node while its loop is closing) would leave those
sockets behind for the garbage collector to report.

Given ``limits``, every connection is a ``peer.h2_guard.GuardedProtocol``: message
sizes refused from their prefix, HTTP/2 settings, connection caps, idle timeout.
"""

from __future__ import annotations

import weakref
from typing import Any

from grpclib.protocol import H2Protocol
from grpclib.server import Handler
from grpclib.server import Server as _GrpclibServer

from peer.h2_guard import GuardedProtocol, TransportGuard, TransportLimits

__all__ = ["Server"]


class Server(_GrpclibServer):
    def __init__(self, *args: Any, limits: TransportLimits | None = None,
                 **kwargs: Any) -> None:
        if limits is not None:
            kwargs.setdefault("config", limits.grpclib_config())
        super().__init__(*args, **kwargs)
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()
        self.guard = TransportGuard(limits) if limits is not None else None

    def _protocol_factory(self) -> H2Protocol:
        protocol: H2Protocol
        if self.guard is None:
            protocol = super()._protocol_factory()
        else:
            # grpclib's own factory, with its protocol class swapped for ours.
            self.__gc_step__()
            handler = Handler(self._mapping, self._codec, self._status_details_codec,
                              self.__dispatch__)
            self._handlers.add(handler)
            protocol = GuardedProtocol(handler, self._config, self._h2_config, self.guard)
        self._protocols.add(protocol)
        return protocol

    def close(self) -> None:
        """Stop listening, cancel running handlers, and hang up on every client."""
        super().close()
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)  # None before connection_made
            if connection is not None:
                connection.close()

    @property
    def port(self) -> int:
        """The TCP port ``start`` bound: grpclib keeps its asyncio server private, and
        its sockets are the only way to learn which port ``port=0`` got."""
        inner: Any = self._server
        for sock in inner.sockets if inner is not None else ():
            port: int = sock.getsockname()[1]
            return port
        raise RuntimeError("the server has no listening socket")
