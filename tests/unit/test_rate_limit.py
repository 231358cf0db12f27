"""Token buckets per connection: a caller over its rate is slowed, then cut."""

from __future__ import annotations

import asyncio

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from peer.net.rate_limit import PeerRateLimiter, RateLimits, TokenBucket, caller


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_spends_its_burst_then_makes_callers_wait_then_refuses() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.reserve(1, 0.0, max_wait=1.0) for _ in range(5)] == [0.0] * 5
    waits = [bucket.reserve(1, 0.0, max_wait=1.0) for _ in range(10)]
    assert waits == pytest.approx([0.1 * n for n in range(1, 11)])
    assert bucket.reserve(1, 0.0, max_wait=1.0) is None  # 1.1 s behind: cut
    assert bucket.reserve(1, 0.5, max_wait=1.0) == pytest.approx(0.6)  # refills


def test_a_cost_larger_than_the_burst_still_fits_once_the_bucket_is_full() -> None:
    bucket = TokenBucket(rate=100, burst=50, now=0.0)
    assert bucket.reserve(4096, 0.0, max_wait=1.0) == 0.0
    assert bucket.reserve(1, 0.0, max_wait=1.0) == pytest.approx(0.01)


def test_connections_and_kinds_have_their_own_buckets() -> None:
    clock = Clock()
    limiter = PeerRateLimiter(RateLimits(bid_rate=1, bid_burst=2, max_wait=0.0), clock)
    assert limiter.reserve("bid", "a:1") == 0.0
    assert limiter.reserve("bid", "a:1") == 0.0
    assert limiter.reserve("bid", "a:1") is None
    assert limiter.reserve("bid", "a:2") == 0.0  # another connection
    assert limiter.reserve("sync", "a:1") == 0.0  # another kind
    clock.now = 1.0
    assert limiter.reserve("bid", "a:1") == 0.0
    assert limiter.refused == 1


def test_buckets_are_bounded() -> None:
    limiter = PeerRateLimiter(RateLimits(max_buckets=10), Clock())
    for n in range(1000):
        limiter.reserve("bid", f"10.0.0.1:{n}")
    assert len(limiter._buckets) == 10


def test_acquire_slows_then_refuses_with_resource_exhausted() -> None:
    async def main() -> tuple[float, Status]:
        limiter = PeerRateLimiter(RateLimits(bid_rate=20, bid_burst=1, max_wait=0.2))
        caller.set("127.0.0.1:5000")
        loop = asyncio.get_running_loop()
        start = loop.time()
        await limiter.acquire("bid")
        await limiter.acquire("bid")  # waits 1/20 s
        slowed = loop.time() - start
        # Ten at once on one connection: the first fits the burst, the next four wait
        # up to 0.2 s, the rest would wait longer and are refused.
        outcomes = await asyncio.gather(
            *(limiter.acquire("bid", key="127.0.0.1:5001") for _ in range(10)),
            return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, GRPCError)]
        assert outcomes[:5] == [None] * 5 and len(refused) == 5
        return slowed, refused[0].status

    slowed, status = asyncio.run(main())
    assert slowed >= 0.04
    assert status == Status.RESOURCE_EXHAUSTED
