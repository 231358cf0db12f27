"""peer.net.h2_guard.CoalescedWrites: one send per turn of the loop, nothing lost or reordered."""

from __future__ import annotations

import asyncio
from typing import Any

from peer.net.h2_guard import CoalescedWrites, coalesced


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closing
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 9) if name == "peername" else None


def test_writes_of_one_turn_go_out_as_one_in_order() -> None:
    async def main() -> None:
        raw = _Transport()
        wrapped = coalesced(raw)
        assert coalesced(wrapped) is wrapped  # never wrapped twice
        for part in (b"headers", b"", b"data", b"trailers"):
            wrapped.write(part)
        assert raw.sent == []  # nothing sent before the loop turns
        await asyncio.sleep(0)
        assert raw.sent == [b"headersdatatrailers"]
        wrapped.write(b"next")
        await asyncio.sleep(0)
        assert raw.sent == [b"headersdatatrailers", b"next"]
        assert wrapped.get_extra_info("peername") == ("127.0.0.1", 9)

    asyncio.run(main())


def test_close_sends_what_is_pending_first_and_abort_drops_it() -> None:
    async def main() -> None:
        raw = _Transport()
        wrapped = CoalescedWrites(raw)
        wrapped.write(b"goaway")
        wrapped.close()
        assert raw.sent == [b"goaway"] and raw.closing
        await asyncio.sleep(0)  # the scheduled flush finds nothing left
        assert raw.sent == [b"goaway"]

        raw = _Transport()
        wrapped = CoalescedWrites(raw)
        wrapped.write(b"lost")
        wrapped.abort()
        await asyncio.sleep(0)
        assert raw.sent == [] and raw.aborted

        raw = _Transport()  # closed by the peer before the turn ended
        wrapped = CoalescedWrites(raw)
        wrapped.write(b"late")
        raw.closing = True
        await asyncio.sleep(0)
        assert raw.sent == []

    asyncio.run(main())


def test_a_write_where_no_loop_runs_goes_straight_out() -> None:
    # asyncio makes a TLS connection in its handshake callback, where trio-asyncio
    # reports no running loop; grpclib writes its preface from there.
    raw = _Transport()
    wrapped = CoalescedWrites(raw)
    wrapped.write(b"preface")
    assert raw.sent == [b"preface"]
