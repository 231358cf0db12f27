"""A Grape HTTP API on loopback that answers the way a broken or hostile grape would.

Modes (``HostileGrape.mode``, changeable while it runs):

- ``"huge"``: an endless reply body, declared as 100 MiB;
- ``"chunked"``: an endless chunked reply with no declared length;
- ``"drip"``: headers, then one byte of a valid 1 KB answer per ``drip_every`` seconds;
- ``"addresses"``: a valid lookup answer of ``per_lookup`` new, dead addresses each
  time (what a grape listing junk announcements would answer);
- ``"honest"``: ``[]`` to every request.

Announces are answered ``1`` (one node stored it) in every mode but the three
broken ones, so a node using this grape keeps going. ``python -m tests.hostile_grape
MODE`` serves one on a free port and prints the port.

It counts what it managed to send, so a test can tell how much a client read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import h11
import trio

__all__ = ["HostileGrape"]

_CHUNK = b"[" + b'"127.0.0.1:1",' * 4096


@dataclass
class HostileGrape:
    mode: str
    per_lookup: int = 20_000
    drip_every: float = 1.0
    port: int = 0
    bytes_sent: int = 0
    requests: int = 0
    lookups: int = 0
    _next_address: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[HostileGrape]
                    = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        try:
            await trio.serve_listeners(self._handle, listeners)
        finally:
            # serve_listeners leaves them open when cancelled; a listening socket left
            # for the garbage collector is a ResourceWarning in whatever test runs then.
            for listener in listeners:
                listener.socket.close()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        target = ""
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    target = event.target.decode("latin-1")
                if isinstance(event, h11.EndOfMessage):
                    self.requests += 1
                    self.lookups += target.endswith("/lookup")
                    await self._answer(conn, stream, target)
                    return  # one request per connection keeps the fake simple
                if isinstance(event, h11.ConnectionClosed):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    async def _send(self, stream: trio.SocketStream, data: bytes) -> None:
        await stream.send_all(data)
        self.bytes_sent += len(data)

    async def _answer(self, conn: h11.Connection, stream: trio.SocketStream,
                      target: str) -> None:
        if self.mode == "huge":
            await self._send(stream, conn.send(h11.Response(
                status_code=200, headers=[("content-length", str(100 * 1024 * 1024))])))
            while True:
                await self._send(stream, conn.send(h11.Data(data=_CHUNK)))
        if self.mode == "chunked":
            await self._send(stream, conn.send(h11.Response(
                status_code=200, headers=[("transfer-encoding", "chunked")])))
            while True:
                await self._send(stream, conn.send(h11.Data(data=_CHUNK)))
        if self.mode == "addresses" and not target.endswith("/lookup"):
            body = b"1"
        elif self.mode == "addresses":
            first = self._next_address
            self._next_address += self.per_lookup
            # Loopback addresses (all of 127/8) on a closed port: probes are refused
            # at once and never leave the machine.
            body = json.dumps([f"127.{1 + (n >> 16) % 254}.{(n >> 8) & 255}.{n & 255}:9"
                               for n in range(first, first + self.per_lookup)]).encode()
        elif self.mode == "drip":
            body = b" " * 1000 + b"[]"  # valid JSON, if one waits for all of it
        else:
            body = b"[]"
        await self._send(stream, conn.send(h11.Response(
            status_code=200, headers=[("content-length", str(len(body)))])))
        if self.mode == "drip":
            for byte in body:
                await self._send(stream, conn.send(h11.Data(data=bytes([byte]))))
                await trio.sleep(self.drip_every)
        else:
            await self._send(stream, conn.send(h11.Data(data=body)))
        await self._send(stream, conn.send(h11.EndOfMessage()))


def main() -> None:
    import sys

    async def serve() -> None:
        grape = HostileGrape(sys.argv[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(grape.serve)
            print(grape.port, flush=True)

    trio.run(serve)


if __name__ == "__main__":
    main()
