"""A grape that answers huge, endless or dripping replies costs one bounded attempt, then
GrapeClient fails over to the next grape."""

from __future__ import annotations

import pytest
import trio

import localgrape
from grape_client import GrapeClient, GrapeUnavailable
from grape_client._client import MAX_REPLY_BYTES
from tests.hostile_grape import HostileGrape


@pytest.mark.parametrize("mode", ["huge", "chunked"])
async def test_an_oversized_reply_is_dropped_unread_and_the_next_grape_answers(
        mode: str) -> None:
    async with trio.open_nursery() as nursery:
        hostile = await nursery.start(HostileGrape(mode).serve)
        good = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        async with GrapeClient([hostile.url, good.url]) as grape:
            with trio.fail_after(30):
                assert await grape.lookup("auction") == []
            assert grape.url == good.url
            # The client stopped reading at the cap: what the fake managed to send is
            # the cap plus what socket buffers hold, not the 100 MiB it offered.
            await trio.sleep(0.2)  # let the fake notice the closed connection
            assert hostile.bytes_sent < MAX_REPLY_BYTES + 16 * 1024 * 1024
        nursery.cancel_scope.cancel()


async def test_a_dripping_reply_hits_the_deadline_then_the_next_grape_answers() -> None:
    async with trio.open_nursery() as nursery:
        hostile = await nursery.start(HostileGrape("drip", drip_every=0.05).serve)
        good = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        async with GrapeClient([hostile.url, good.url], timeout=1.0, deadline=1.5) as grape:
            start = trio.current_time()
            with trio.fail_after(30):
                assert await grape.lookup("auction") == []
            elapsed = trio.current_time() - start
            # One deadline for the whole attempt: far less than the 50 s drip.
            assert 1.4 <= elapsed < 10
            assert hostile.requests == 1
        nursery.cancel_scope.cancel()


async def test_only_hostile_grapes_is_unavailable_within_one_deadline_each() -> None:
    async with trio.open_nursery() as nursery:
        drip = await nursery.start(HostileGrape("drip", drip_every=0.05).serve)
        huge = await nursery.start(HostileGrape("huge").serve)
        async with GrapeClient([drip.url, huge.url], timeout=1.0, deadline=1.5) as grape:
            with trio.fail_after(30), pytest.raises(GrapeUnavailable) as info:
                await grape.lookup("auction")
        assert "no complete reply within 1.5 s" in str(info.value)
        assert "exceeds" in str(info.value)
        nursery.cancel_scope.cancel()


def test_deadline_and_reply_cap_are_checked() -> None:
    with pytest.raises(ValueError, match="deadline"):
        GrapeClient("http://127.0.0.1:1", deadline=0)
    with pytest.raises(ValueError, match="max_reply_bytes"):
        GrapeClient("http://127.0.0.1:1", max_reply_bytes=0)
