"""The thin trio + h11 layer: sockets in, :mod:`localgrape._dispatch` for the rest.

Modelled on h11's ``examples/trio-server.py``: one task per connection, a
deadline per request, ``send_failed()`` when a send breaks, keep-alive with an
idle timeout of 5 s (Grape advertises ``Keep-Alive: timeout=5``), and a
best-effort clean shutdown. Framing quirks copied from Node's http server
(grape-http-api.md section 1, checked against grenache-grape 1.0.0):

* responses carry exactly ``Date``, ``Connection``, ``Keep-Alive`` and
  ``Content-Length``, in that order, and no ``Content-Type``;
* a client that asks to close (``Connection: close``) gets ``Connection: close``
  and no ``Keep-Alive``; an HTTP/1.0 client also gets no ``Content-Length``;
* bytes that are not HTTP get Node's bare ``400 Bad Request`` and a close.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final

import h11
import trio

from ._dispatch import PAYLOAD_SIZE, Response, decode, finish
from ._store import Dht

__all__ = ["GrapeApp", "Timeouts", "serve_connection"]

log = logging.getLogger("localgrape")

MAX_RECV: Final = 64 * 1024
# Reads of data that was already there between two forced checkpoints (_read_fd).
_CHECKPOINT_EVERY: Final = 16
# Node's default --max-http-header-size.
MAX_HEADER_BYTES: Final = 16 * 1024
# Without --check_maxPayloadSize real Grape takes any body (section 1); localgrape
# still refuses more than this, with the 413 Grape uses, so that memory is bounded.
HARD_BODY_LIMIT: Final = 64 * 1024 * 1024

_REASONS: Final = {200: b"OK", 301: b"Moved Permanently", 302: b"Found",
                   413: b"Payload Too Large", 500: b"Internal Server Error"}
# Node's http server answers unparseable requests with these bare responses.
_BAD_REQUEST: Final = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"
_HEADERS_TOO_LARGE: Final = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                             b"Connection: close\r\n\r\n")
_REQUEST_TIMEOUT: Final = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n"
_MAX_LOGGED_ERRORS: Final = 20


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Connection deadlines in seconds.

    Attributes:
        keep_alive: how long an idle connection waits for its next request
            (Node's ``keepAliveTimeout``, advertised as ``Keep-Alive: timeout=5``).
        request: how long one request may take, from its first byte to the end of
            the response (a slow client gets Node's bare 408 and a close).
        linger: how long a closing connection is drained before it is dropped.
    """

    keep_alive: float = 5.0
    request: float = 30.0
    linger: float = 1.0


class _DateCache:
    """The ``Date`` header value, formatted at most once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


class GrapeApp:
    """Everything a connection needs: the DHT, the payload limit, the clock.

    Args:
        dht: the DHT that runs lookups, announces, puts and gets.
        max_payload_size: ``--check_maxPayloadSize`` or None (no limit, section 1).
        timeouts: connection deadlines.
    """

    def __init__(self, dht: Dht, *, max_payload_size: int | None = None,
                 timeouts: Timeouts | None = None) -> None:
        self.dht = dht
        self.max_payload_size = max_payload_size
        self.body_limit = (HARD_BODY_LIMIT if max_payload_size is None
                           else min(max_payload_size, HARD_BODY_LIMIT))
        self.timeouts = timeouts or Timeouts()
        self.date = _DateCache()
        self.errors_logged = 0

    async def respond(self, target: str, body: bytes) -> Response:
        """The response to one complete request."""
        decoded = decode(target, body, dht_port=self.dht.dht_port,
                         max_payload_size=self.max_payload_size)
        if isinstance(decoded, Response):
            return decoded
        return finish(decoded, await self.dht.execute(decoded, trio.current_time()))

    def log_error(self, what: str, exc: BaseException) -> None:
        """Log an unexpected error, with a traceback for the first few only."""
        self.errors_logged += 1
        if self.errors_logged <= _MAX_LOGGED_ERRORS:
            log.error("%s: %r", what, exc, exc_info=exc)


class _ClientGone(Exception):
    """The peer closed or reset the connection; nothing more can be sent."""


class _Connection:
    """One HTTP connection: an h11 state machine over a trio stream."""

    def __init__(self, stream: trio.abc.Stream, app: GrapeApp) -> None:
        self.stream = stream
        self.app = app
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.sent_anything = False
        self.fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self.sent_in_cycle = False
        self.reads_since_checkpoint = 0
        # Fast path (see _parse_simple): used until the first request that is not
        # simple; then the buffered bytes go to h11 for the rest of the connection.
        self.fast_buf: bytearray | None = bytearray()

    async def _send_raw(self, data: bytes) -> None:
        if self.fd >= 0:
            # Responses are small: one write() usually takes all of it, which saves
            # trio's scheduling round of send_all (a third of a lookup's time).
            try:
                written = os.write(self.fd, data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                self.conn.send_failed()
                raise _ClientGone from exc
            self.sent_anything = self.sent_in_cycle = True
            if written == len(data):
                return
            data = data[written:]
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.conn.send_failed()
            raise _ClientGone from exc
        self.sent_anything = True
        self.sent_in_cycle = True

    async def _send_continue(self) -> None:
        if self.conn.they_are_waiting_for_100_continue:
            # Node answers Expect: 100-continue with a bare "100 Continue" at once,
            # before the request handler runs (even if the body is already here).
            head = self.conn.send(h11.InformationalResponse(
                status_code=100, headers=[], reason=b"Continue"))
            await self._send_raw(head)

    async def _receive(self) -> None:
        await self._send_continue()
        self.conn.receive_data(await self._receive_some())

    async def _read_fd(self) -> bytes:
        """One read straight from the socket, waiting only when nothing is there.

        trio's receive_some adds a scheduling round after every read that found
        data; on the keep-alive fast path that round is a sizeable share of a
        lookup. A checkpoint still happens whenever the socket has nothing to
        read, and at least every ``_CHECKPOINT_EVERY`` reads, so cancellation
        (the request deadline) and fairness between connections hold.
        """
        self.reads_since_checkpoint += 1
        if self.reads_since_checkpoint >= _CHECKPOINT_EVERY:
            self.reads_since_checkpoint = 0
            await trio.lowlevel.checkpoint()
        while True:
            try:
                return os.read(self.fd, MAX_RECV)
            except BlockingIOError:
                self.reads_since_checkpoint = 0
                await trio.lowlevel.wait_readable(self.fd)
            except OSError:
                return b""  # reset by the peer: the same as a close

    async def _receive_some(self) -> bytes:
        while True:
            try:
                data = (await self._read_fd() if self.fd >= 0
                        else bytes(await self.stream.receive_some(MAX_RECV)))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
            if (data and self.fast_buf is None and self.conn.their_state is h11.IDLE
                    and not self.conn.trailing_data[0]):
                # Node ignores empty lines before a request line (RFC 9112 2.2);
                # h11 does not.
                data = data.lstrip(b"\r\n")
                if not data:
                    continue
            return data

    async def _next_event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                await self._receive()
                continue
            assert isinstance(event, h11.Event)
            return event

    async def _wait_for_request_bytes(self) -> bool:
        """Wait (idle timeout) until a request starts; False if the client left."""
        buffered, closed = self.conn.trailing_data
        if buffered or closed:
            return True  # a pipelined request, or an EOF h11 must report
        with trio.move_on_after(self.app.timeouts.keep_alive):
            data = await self._receive_some()
            self.conn.receive_data(data)
            return bool(data)
        return False  # idle too long: Node closes silently

    async def _read_request(self) -> tuple[h11.Request, bytes | None]:
        """Read one request; the body is None if it was over the payload limit."""
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            raise _ClientGone
        assert isinstance(event, h11.Request)
        if _head_size(event) > MAX_HEADER_BYTES:
            # h11 only limits incomplete heads; Node limits every head.
            raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        await self._send_continue()
        limit = self.app.body_limit
        length = _content_length(event)
        if length is not None and length > limit:
            return event, None  # raw-body rejects at once on Content-Length
        body = bytearray()
        while True:
            part = await self._next_event()
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > limit:
                    return event, None
            elif isinstance(part, h11.EndOfMessage):
                return event, bytes(body)
            else:
                raise _ClientGone  # closed in the middle of the body

    def _head(self, request: h11.Request, response: Response) -> bytes:
        reason = _REASONS.get(response.status, b"Unknown")
        lines = [b"HTTP/1.1 %d %s\r\nDate: %s\r\n" % (response.status, reason,
                                                     self.app.date.get())]
        if request.http_version == b"1.0":
            lines.append(b"Connection: close\r\n\r\n")
        elif _wants_close(request):
            lines.append(b"Connection: close\r\nContent-Length: %d\r\n\r\n"
                         % len(response.body))
        else:
            lines.append(b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(response.body))
        return b"".join(lines)

    async def _send_response(self, request: h11.Request, response: Response) -> None:
        headers = [(b"Content-Length", str(len(response.body)).encode())]
        if request.http_version == b"1.0":
            headers = []
        # h11 tracks the state; the head bytes are ours (Node's header order).
        self.conn.send(h11.Response(status_code=response.status, headers=headers,
                                    reason=_REASONS.get(response.status, b"Unknown")))
        data = self._head(request, response) + response.body
        self.conn.send(h11.Data(data=response.body))
        self.conn.send(h11.EndOfMessage())
        await self._send_raw(data)

    async def _drain_body(self) -> None:
        """Read and drop the rest of a refused body, so the connection can go on."""
        while self.conn.their_state is h11.SEND_BODY:
            event = await self._next_event()
            if isinstance(event, h11.ConnectionClosed):
                raise _ClientGone

    async def run(self) -> None:
        """Serve requests until the client leaves, misbehaves or idles out."""
        timeouts = self.app.timeouts
        try:
            while True:
                if self.fast_buf is not None:
                    self.sent_in_cycle = False
                    try:
                        handled = await self._fast_cycle(self.fast_buf)
                    except trio.TooSlowError:
                        await self._send_raw(_REQUEST_TIMEOUT)
                        return
                    if handled is False:
                        return
                    if handled is True:
                        continue
                if not await self._wait_for_request_bytes():
                    return
                try:
                    with trio.fail_after(timeouts.request):
                        await self._one_request()
                except trio.TooSlowError:
                    if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._send_raw(_REQUEST_TIMEOUT)
                    return
                except h11.RemoteProtocolError as exc:
                    if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._send_raw(_protocol_error_response(exc, self.app))
                    return
                if self.conn.our_state is h11.MUST_CLOSE:
                    return
                try:
                    self.conn.start_next_cycle()
                except h11.ProtocolError:
                    return
        except _ClientGone:
            return
        finally:
            await self._shutdown()

    async def _fast_cycle(self, buf: bytearray) -> bool | None:
        """Serve one simple request without h11.

        Returns:
            True when a request was answered, False when the connection should
            close, None when the request is not simple: its bytes were handed to
            h11, which serves the rest of the connection.
        """
        timeouts = self.app.timeouts
        idle = not buf
        # One cancel scope per request: its deadline is the keep-alive timeout
        # while idle, then the request timeout (cheaper than two nested scopes).
        with trio.CancelScope() as scope:
            if idle:
                scope.deadline = trio.current_time() + timeouts.keep_alive
                data = await self._receive_some()
                if not data:
                    return False  # the client left
                buf += data
                idle = False
            scope.deadline = trio.current_time() + timeouts.request
            while True:
                parsed = _parse_simple(buf)
                if parsed is None:
                    if len(buf) > MAX_HEADER_BYTES:
                        return self._switch_to_h11(buf)
                    data = await self._receive_some()
                    if not data:
                        return self._switch_to_h11(buf, eof=True)
                    buf += data
                    continue
                if isinstance(parsed, bool):
                    return self._switch_to_h11(buf)
                target, head_end, length = parsed
                if length > self.app.body_limit:
                    return self._switch_to_h11(buf)
                total = head_end + length
                while len(buf) < total:
                    data = await self._receive_some()
                    if not data:
                        return False
                    buf += data
                body = bytes(buf[head_end:total])
                del buf[:total]
                break
            try:
                response = await self.app.respond(target, body)
            except Exception as exc:  # a bug must not take the grape down
                self.app.log_error(f"request {target!r} failed", exc)
                response = Response(500, b"ERR_GRAPE_GENERIC")
            await self._send_raw(
                b"HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: keep-alive\r\n"
                b"Keep-Alive: timeout=5\r\nContent-Length: %d\r\n\r\n%s"
                % (response.status, _REASONS.get(response.status, b"Unknown"),
                   self.app.date.get(), len(response.body), response.body))
            return True
        # The deadline passed: an idle connection closes silently (Node), a
        # request in progress gets Node's bare 408.
        if not idle and not self.sent_in_cycle:
            raise trio.TooSlowError
        return False

    def _switch_to_h11(self, buf: bytearray, *, eof: bool = False) -> bool | None:
        """Hand the buffered bytes to h11; None (the _fast_cycle result)."""
        self.fast_buf = None
        self.conn.receive_data(bytes(buf))
        if eof:
            self.conn.receive_data(b"")
        return None

    async def _one_request(self) -> None:
        request, body = await self._read_request()
        if body is None:
            await self._send_response(request, PAYLOAD_SIZE)
            await self._drain_body()
            return
        target = request.target.decode("latin-1")
        try:
            response = await self.app.respond(target, body)
        except Exception as exc:  # a bug must not take the grape down
            self.app.log_error(f"request {target!r} failed", exc)
            response = Response(500, b"ERR_GRAPE_GENERIC")
        await self._send_response(request, response)

    async def _shutdown(self) -> None:
        with trio.CancelScope(shield=True):
            try:
                await self.stream.send_eof() if isinstance(
                    self.stream, trio.abc.HalfCloseableStream) else None
                with trio.move_on_after(self.app.timeouts.linger):
                    while await self.stream.receive_some(MAX_RECV):
                        pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
                pass
            finally:
                await trio.aclose_forcefully(self.stream)


_REQUEST_LINE: Final = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/1\.1")
_HEADER_LINE: Final = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*")
_NOT_SIMPLE_HEADERS: Final = frozenset({b"transfer-encoding", b"expect", b"upgrade"})


def _parse_simple(buf: bytearray) -> tuple[str, int, int] | bool | None:
    """Parse a plain keep-alive HTTP/1.1 request head at the start of ``buf``.

    Leading empty lines are dropped from ``buf`` (Node ignores them).

    Returns:
        ``(target, head_length, content_length)`` for a simple request; None if
        the head is incomplete; False if the request is anything else (h11 then
        handles it, including every error).
    """
    while buf[:2] == b"\r\n":
        del buf[:2]
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        first = buf.find(b"\r\n")
        if first >= 0 and not _REQUEST_LINE.fullmatch(buf, 0, first):
            return False
        return None
    lines = bytes(buf[:end]).split(b"\r\n")
    request = _REQUEST_LINE.fullmatch(lines[0])
    if request is None or end + 4 > MAX_HEADER_BYTES:
        return False
    hosts = 0
    length = -1
    for line in lines[1:]:
        header = _HEADER_LINE.fullmatch(line)
        if header is None:
            return False
        name = header.group(1).lower()
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            value = header.group(2)
            if length >= 0 or not value.isdigit() or len(value) > 18:
                return False
            length = int(value)
        elif name == b"connection":
            if header.group(2).lower() != b"keep-alive":
                return False
        elif name in _NOT_SIMPLE_HEADERS:
            return False
    if hosts != 1:
        return False
    return request.group(2).decode("latin-1"), end + 4, max(length, 0)


def _head_size(request: h11.Request) -> int:
    size = len(request.method) + len(request.target) + 12
    for name, value in request.headers:
        size += len(name) + len(value) + 4
    return size


def _wants_close(request: h11.Request) -> bool:
    for name, value in request.headers:
        if name == b"connection" and b"close" in (t.strip() for t in value.lower().split(b",")):
            return True
    return False


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has validated it
    return None


def _protocol_error_response(exc: h11.RemoteProtocolError, app: GrapeApp) -> bytes:
    if exc.error_status_hint == 431:
        return _HEADERS_TOO_LARGE
    if "Host" in str(exc):
        # Node 20 (requireHostHeader) answers a Host-less HTTP/1.1 request this way.
        return (b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nDate: " + app.date.get()
                + b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    return _BAD_REQUEST


async def serve_connection(stream: trio.abc.Stream, app: GrapeApp) -> None:
    """Serve one connection to completion. Never raises (except Cancelled)."""
    try:
        await _Connection(stream, app).run()
    except Exception as exc:
        app.log_error("connection failed", exc)
        await trio.aclose_forcefully(stream)
