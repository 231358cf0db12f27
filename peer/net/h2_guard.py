"""Bounds on what one gRPC connection can make a node buffer, below grpclib.

grpclib 0.4.9 offers two knobs: the HTTP/2 flow-control windows
(``Configuration.http2_connection_window_size`` / ``http2_stream_window_size``).
Everything else it leaves open, and this module does it one layer down, on the
h2 events grpclib's ``H2Protocol`` hands to its ``EventsProcessor``:

- **Message size.** grpclib reads a message's 5-byte prefix, then
  ``Buffer.read(length)`` for the body, acknowledging (re-opening the window for)
  every chunk as it arrives, and only then hands the whole body to the codec. A
  prefix declaring 2^31-1 bytes therefore makes it buffer everything the sender
  streams. Here each stream's gRPC framing is followed as DATA arrives: a message
  whose prefix declares more than the limit is refused (``RESOURCE_EXHAUSTED``
  trailers, then ``RST_STREAM``) before any of its body is buffered.
- **Bytes in flight.** The declared sizes of messages still arriving are summed
  per connection and per server; a message that would pass either budget is
  refused the same way, so many streams each declaring 4 MiB cannot add up.
- **HTTP/2 settings.** ``MAX_CONCURRENT_STREAMS`` and ``MAX_HEADER_LIST_SIZE``
  (grpclib keeps h2's defaults, 100 and 64 KiB, and has no setting for them).
- **Connections.** A cap per remote address and in all (grpclib accepts every
  connection), and an idle timeout: a connection with no open stream and no bytes
  received for ``idle_timeout`` is closed with GOAWAY (grpclib's keepalive only
  pings; it never closes an idle connection).

All of it is plain synchronous bookkeeping inside the asyncio protocol callbacks,
as grpclib's own processor is.

Below that, :class:`CoalescedWrites`: grpclib writes each HTTP/2 step to the socket as
it goes (a unary reply is headers, data and trailers: three ``send`` calls, each
waking the peer); the node's connections gather what one turn of the loop writes and
send it at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, cast

from grpclib.client import Channel
from grpclib.client import Handler as ClientHandler
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.metadata import encode_grpc_message
from grpclib.protocol import AbstractHandler, Connection, EventsProcessor, H2Protocol
from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import DataReceived, StreamEnded, StreamReset
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

from peer.net.tls import CertificateChanged, is_tls, peer_binding
from peer.net.warn_once import WarnOnce

__all__ = ["CoalescedWrites", "GuardedChannel", "GuardedProtocol", "TransportGuard",
           "TransportLimits", "coalesced", "cut_connection"]

log = logging.getLogger(__name__)

_KiB: Final = 1024
_MiB: Final = 1024 * 1024
_PREFIX: Final = 5  # gRPC message prefix: 1 flag byte, 4 bytes of big-endian length
_REFUSED_LINGER: Final = 0.5  # seconds a refused connection stays open to read its GOAWAY
# The first bytes of a TLS ClientHello (a handshake record, TLS 1.0-1.3 framing).
_TLS_HANDSHAKE_RECORD: Final = b"\x16\x03"
_tls_callers = WarnOnce(log)


@dataclass(frozen=True)
class TransportLimits:
    """Bounds on the public gRPC port (README, Limits)."""

    #: Largest message accepted; the same as ``peer.net.codec.MAX_MESSAGE_BYTES``.
    max_message_bytes: int = 4 * _MiB
    #: Declared bytes of messages still arriving, per connection and per server.
    connection_in_flight: int = 8 * _MiB
    server_in_flight: int = 64 * _MiB
    #: HTTP/2 receive windows: how much a sender may have unacknowledged.
    connection_window: int = 2 * _MiB
    stream_window: int = 1 * _MiB
    max_concurrent_streams: int = 64
    max_header_list_size: int = 16 * _KiB
    #: Nodes on one host share an address, so this allows a few dozen of them.
    max_connections_per_address: int = 64
    max_connections: int = 512
    idle_timeout: float = 300.0

    def grpclib_config(self) -> Configuration:
        return Configuration(http2_connection_window_size=self.connection_window,
                             http2_stream_window_size=self.stream_window)


@dataclass
class TransportGuard:
    """State shared by every connection of one server: counts and budgets."""

    limits: TransportLimits = field(default_factory=TransportLimits)
    connections: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    refused_messages: int = 0
    refused_connections: int = 0
    idle_closed: int = 0

    @property
    def total_connections(self) -> int:
        return sum(self.connections.values())

    def admit(self, address: str) -> bool:
        limits = self.limits
        if (self.connections[address] >= limits.max_connections_per_address
                or self.total_connections >= limits.max_connections):
            self.refused_connections += 1
            return False
        self.connections[address] += 1
        return True

    def release(self, address: str) -> None:
        self.connections[address] -= 1
        if self.connections[address] <= 0:
            del self.connections[address]


class _Framing:
    """Where one stream is in its sequence of gRPC messages."""

    __slots__ = ("declared", "prefix", "remaining")

    def __init__(self) -> None:
        self.prefix = b""  # the part of the next prefix received so far
        self.remaining = 0  # body bytes of the current message still to come
        self.declared = 0  # the current message's length, reserved in the budgets


class GuardedProcessor(EventsProcessor):
    """grpclib's h2 event processor, following each stream's gRPC framing."""

    def __init__(self, handler: AbstractHandler, connection: Connection,
                 h2_connection: Any, guard: TransportGuard, *, client: bool = False) -> None:
        super().__init__(handler, connection)
        self._h2 = h2_connection
        self._guard = guard
        self._client = client
        self._framing: dict[int, _Framing] = {}
        self._in_flight = 0

    def process_data_received(self, event: DataReceived) -> None:
        stream_id = event.stream_id
        if stream_id in self.streams and event.data:
            refusal = self._follow(stream_id, event.data)
            if refusal is not None:
                self._refuse(stream_id, refusal)
                # Its bytes were never buffered: hand the window straight back.
                self.connection.ack(stream_id, event.flow_controlled_length)
                return
        super().process_data_received(event)

    def process_stream_ended(self, event: StreamEnded) -> None:
        self._forget(event.stream_id)
        super().process_stream_ended(event)

    def process_stream_reset(self, event: StreamReset) -> None:
        self._forget(event.stream_id)
        super().process_stream_reset(event)

    def close(self, reason: str = "Connection closed") -> None:
        for stream_id in list(self._framing):
            self._forget(stream_id)
        super().close(reason)

    # ------------------------------------------------------------------ framing

    def _follow(self, stream_id: int, data: bytes) -> str | None:
        """Advance the stream's framing over ``data``; a reason if a message is refused."""
        framing = self._framing.get(stream_id)
        if framing is None:
            framing = self._framing[stream_id] = _Framing()
        pos, end = 0, len(data)
        while pos < end:
            if framing.remaining:
                taken = min(framing.remaining, end - pos)
                framing.remaining -= taken
                pos += taken
                if not framing.remaining:
                    self._unreserve(framing)
                continue
            chunk = data[pos:pos + _PREFIX - len(framing.prefix)]
            framing.prefix += chunk
            pos += len(chunk)
            if len(framing.prefix) < _PREFIX:
                break
            length = int.from_bytes(framing.prefix[1:], "big")
            framing.prefix = b""
            refusal = self._reserve(framing, length)
            if refusal is not None:
                return refusal
        return None

    def _reserve(self, framing: _Framing, length: int) -> str | None:
        limits = self._guard.limits
        if length > limits.max_message_bytes:
            return (f"message of {length} bytes exceeds the limit of "
                    f"{limits.max_message_bytes}")
        if (self._in_flight + length > limits.connection_in_flight
                or self._guard.in_flight + length > limits.server_in_flight):
            return f"too many bytes in flight to accept a message of {length} bytes"
        framing.declared = framing.remaining = length
        self._in_flight += length
        self._guard.in_flight += length
        return None

    def _unreserve(self, framing: _Framing) -> None:
        self._in_flight -= framing.declared
        self._guard.in_flight -= framing.declared
        framing.declared = 0

    def _forget(self, stream_id: int) -> None:
        framing = self._framing.pop(stream_id, None)
        if framing is not None:
            self._unreserve(framing)

    def _refuse(self, stream_id: int, reason: str) -> None:
        """End the stream with RESOURCE_EXHAUSTED and stop its handler."""
        self._guard.refused_messages += 1
        self._forget(stream_id)
        log.info("refused a message on stream %d: %s", stream_id, reason)
        h2_stream = self._h2.streams.get(stream_id)
        try:
            if self._client:
                # A reply too large: cancel the call; the caller sees the stream end.
                self._h2.reset_stream(stream_id, error_code=ErrorCodes.CANCEL)
            elif h2_stream is not None and h2_stream.open:
                trailers = [("grpc-status", str(Status.RESOURCE_EXHAUSTED.value)),
                            ("grpc-message", encode_grpc_message(reason))]
                if not h2_stream.state_machine.headers_sent:
                    trailers = [(":status", "200"),
                                ("content-type", "application/grpc+proto"), *trailers]
                self._h2.send_headers(stream_id, trailers, end_stream=True)
            if not self._client:
                # The sender must stop: the rest of the message is never read.
                self._h2.reset_stream(stream_id, error_code=ErrorCodes.NO_ERROR)
        except ProtocolError:  # the stream closed meanwhile; nothing left to end
            pass
        self.connection.flush()
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.__terminated__(reason)
            self.handler.cancel(stream)


class CoalescedWrites:
    """A transport whose ``write`` calls within one turn of the loop go out as one.

    The first write of a turn schedules the send (``call_soon``); later ones join it,
    in order. ``close`` sends what is pending first, as the transport's own buffer is
    sent before it closes; ``abort`` drops it, as the transport drops its own. Every
    other attribute is the transport's.
    """

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self._pending: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                # A TLS connection is made in asyncio's handshake callback, where
                # trio-asyncio reports no running loop: nothing is pending yet, so
                # this write goes straight out, in order.
                self.transport.write(data)
                return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Send what was written this turn (the loop calls it; so does ``close``)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if not self.transport.is_closing():
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._pending = []
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def coalesced(transport: Any) -> asyncio.Transport:
    """``transport`` with its writes gathered per turn of the loop (once only); typed
    as the transport it stands in for."""
    wrapped = transport if isinstance(transport, CoalescedWrites) else CoalescedWrites(transport)
    return cast(asyncio.Transport, wrapped)


class GuardedProtocol(H2Protocol):
    """grpclib's server protocol with ``TransportLimits`` applied."""

    def __init__(self, handler: AbstractHandler, config: Configuration,
                 h2_config: H2Configuration, guard: TransportGuard, *,
                 client: bool = False) -> None:
        super().__init__(handler, config, h2_config)
        self._guard = guard
        self._client = client
        self._address: str | None = None
        self._last_activity = time.monotonic()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._first_bytes = True

    def connection_made(self, transport: Any) -> None:
        super().connection_made(coalesced(transport))
        limits = self._guard.limits
        h2_connection = self.connection._connection
        self.processor = GuardedProcessor(self.handler, self.connection, h2_connection,
                                          self._guard, client=self._client)
        if self._client:
            return  # connection caps, settings and the idle timeout are the server's
        h2_connection.update_settings({
            SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
        })
        # h2 applies a local setting once the peer acknowledges it; the header
        # decoder's bound can hold from the first byte.
        h2_connection.decoder.max_header_list_size = limits.max_header_list_size
        self.connection.flush()
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        if not self._guard.admit(address):
            log.info("refused a connection from %s: too many connections", address)
            # Say why (GOAWAY), ignore what it sends, hang up shortly after: closing
            # at once, with its preface unread, would reset the connection and could
            # discard the GOAWAY before the client reads it.
            self._refused = True
            self._go_away(ErrorCodes.ENHANCE_YOUR_CALM, close=False)
            asyncio.get_running_loop().call_later(_REFUSED_LINGER, self.connection.close)
            return
        self._address = address
        self._arm_idle_timer(limits.idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._first_bytes and not self._client:
            self._first_bytes = False
            if data.startswith(_TLS_HANDSHAKE_RECORD) and not is_tls(self.connection._transport):
                # A node with TLS calls this plain port: say so, not a protocol error.
                _tls_callers.warn(self._address or "?", "a peer at %s speaks TLS to this "
                                  "node, which runs with --no-tls: every node of a network "
                                  "must use the same setting", self._address or "?")
                self.connection.close()
                return
        self._last_activity = time.monotonic()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._address is not None:
            self._guard.release(self._address)
            self._address = None
        super().connection_lost(exc)

    def _arm_idle_timer(self, delay: float) -> None:
        self._idle_timer = asyncio.get_running_loop().call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        timeout = self._guard.limits.idle_timeout
        quiet_for = time.monotonic() - self._last_activity
        if self.processor.streams or quiet_for < timeout:
            self._arm_idle_timer(max(timeout - quiet_for, 1.0))
            return
        self._guard.idle_closed += 1
        log.debug("closing a connection from %s idle for %.0f s", self._address, quiet_for)
        self._go_away(ErrorCodes.NO_ERROR)

    def _go_away(self, code: ErrorCodes, *, close: bool = True) -> None:
        try:
            self.connection._connection.close_connection(error_code=code)
            self.connection.flush()
        except ProtocolError:
            pass
        if close:
            self.connection.close()


class GuardedChannel(Channel):
    """grpclib's ``Channel`` whose replies are bounded like requests on our server.

    A peer we call (it answered ``Hello``, or Grape listed it) could answer ``Sync``
    with a message declared 2^31-1 bytes long; grpclib's client would buffer it all
    before the codec saw its size. Here such a reply cancels the call at its prefix.

    Over TLS (``ssl=``), the channel pins the certificate of its first connection
    (``binding``, its SHA-256) and refuses a reconnection that presents another
    (``CertificateChanged``): the Hello proved the node behind that certificate, and
    grpclib reconnects by itself, so a later connection must reach the same one.
    """

    def __init__(self, *args: Any, limits: TransportLimits | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = TransportGuard(limits or TransportLimits())
        #: SHA-256 of the certificate every connection of this channel presented;
        #: None before the first TLS connection, always None without TLS.
        self.binding: bytes | None = None

    def _protocol_factory(self) -> H2Protocol:
        return GuardedProtocol(ClientHandler(), self._config, self._h2_config, self._guard,
                               client=True)

    async def _create_connection(self) -> H2Protocol:
        protocol = await super()._create_connection()
        if self._ssl is None:
            return protocol
        binding = peer_binding(protocol.connection._transport)
        if self.binding is None and binding:
            self.binding = binding
        elif binding != self.binding:
            protocol.connection.close()
            raise CertificateChanged(f"{self._host}:{self._port} presented another TLS "
                                     "certificate than on its first connection")
        return protocol


def cut_connection(server_stream: Any) -> None:
    """Close the connection a grpclib server ``Stream`` came on: GOAWAY, then hang up.

    For a caller the rate limits refused many times (``peer.net.rate_limit``). grpclib
    has no public way from a handler to its connection; its ``Stream._stream`` is
    the protocol-level stream that holds it.
    """
    connection = server_stream._stream.connection
    if connection.is_closing():
        return
    log.info("cut a connection that kept going over its rate limit")
    try:
        connection._connection.close_connection(error_code=ErrorCodes.ENHANCE_YOUR_CALM)
        connection.flush()
    except ProtocolError:
        pass
    connection.close()
