"""Per-peer fairness for the costly Peer rpcs: token buckets, one per connection.

Every ``PlaceBid`` costs the seller a signature check and a durable append, every
``Sync`` streams its log, every pushed event a signature check and a write. A
remote peer is known here by its connection (``host:port`` of the far end): node
ids in requests are only claimed, and every node opens one channel to each peer,
so a connection is the unit an honest peer never shares with another. The
transport guard (``peer.net.h2_guard``) caps connections per address, which bounds
what opening more connections buys.

A caller over its rate is first **slowed** (the request waits for its tokens, as
grpclib's flow control would make a sender wait), then **refused**: a request that
would wait longer than ``max_wait`` gets ``RESOURCE_EXHAUSTED``. The waiting
requests of one connection are bounded by its concurrent-stream limit. Refusing
still costs the node a little per request, so a connection refused ``cut_after``
times is **cut** (GOAWAY, then closed); it must reconnect, at the cost of a new
handshake, within the per-address connection cap.

Defaults, per connection (README, Limits):

- ``PlaceBid``: 500/s, burst 500. The benchmark's busiest honest bidder node
  sends ~300 bids/s (64 bidders behind one node), so honest load is never slowed;
  a flooder gets at most that much of a seller that accepts ~600 bids/s in all.
  0x Mesh allows 100 messages/s with a burst of 500 per peer, but one of its peers
  is one trader; one of our nodes may carry many users.
- ``Sync``: 10/s, burst 20. An honest node syncs once per peer at start, on a gap,
  and once per anti-entropy round (3 s).
- pushed events: 2000/s, burst 10,000. A seller pushes each of its events once to
  each peer (~600/s at the benchmark's peak); the burst holds the largest push
  (``MAX_EVENTS_PER_PUSH``, 4096). Slowing a push only makes the sender's next
  batch bigger (one batch is in flight per peer), so events still flow.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from grpclib import GRPCError
from grpclib.const import Status

__all__ = ["PeerRateLimiter", "RateLimits", "TokenBucket", "caller"]

#: The far end of the connection the current request came on (set per handler task).
caller: Final[contextvars.ContextVar[str]] = contextvars.ContextVar("caller", default="")


@dataclass(frozen=True)
class RateLimits:
    bid_rate: float = 500.0
    bid_burst: float = 500.0
    sync_rate: float = 10.0
    sync_burst: float = 20.0
    push_event_rate: float = 2000.0
    push_event_burst: float = 10_000.0
    #: Longer than this behind its rate, a request is refused instead of delayed.
    max_wait: float = 2.0
    #: Refusals after which a connection is closed.
    cut_after: int = 100
    #: Buckets kept (one per connection and kind); the least recently used go first.
    max_buckets: int = 4096


class RateLimited(GRPCError):
    """``RESOURCE_EXHAUSTED`` for a caller over its rate; ``cut``: close its connection."""

    def __init__(self, message: str, *, cut: bool) -> None:
        super().__init__(Status.RESOURCE_EXHAUSTED, message)
        self.cut = cut


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. Tokens may go negative:
    a caller that reserved ahead waits until the bucket is back to zero."""

    __slots__ = ("burst", "rate", "refusals", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now
        self.refusals = 0

    def reserve(self, cost: float, now: float, max_wait: float) -> float | None:
        """Take ``cost`` tokens; returns how long to wait for them, or None (and takes
        nothing) when that would be longer than ``max_wait``."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        after = self.tokens - min(cost, self.burst)
        wait = -after / self.rate if after < 0 else 0.0
        if wait > max_wait:
            return None
        self.tokens = after
        return wait


class PeerRateLimiter:
    """One bucket per (connection, kind of request)."""

    def __init__(self, limits: RateLimits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or RateLimits()
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()
        self.slowed = 0
        self.refused = 0

    def _rates(self, kind: str) -> tuple[float, float]:
        limits = self.limits
        rates = {"bid": (limits.bid_rate, limits.bid_burst),
                 "sync": (limits.sync_rate, limits.sync_burst),
                 "push": (limits.push_event_rate, limits.push_event_burst)}
        return rates[kind]

    def reserve(self, kind: str, key: str, cost: float = 1.0) -> float | None:
        """Seconds the request must wait, or None when it is refused."""
        now = self._clock()
        bucket = self._buckets.get((kind, key))
        if bucket is None:
            bucket = self._buckets[(kind, key)] = TokenBucket(*self._rates(kind), now)
            while len(self._buckets) > self.limits.max_buckets:
                # A forgotten bucket comes back full: only a caller idle long enough
                # to be least recently used of thousands gains from that.
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end((kind, key))
        wait = bucket.reserve(cost, now, self.limits.max_wait)
        if wait is None:
            self.refused += 1
            bucket.refusals += 1
        elif wait > 0:
            self.slowed += 1
        return wait

    def should_cut(self, kind: str, key: str) -> bool:
        bucket = self._buckets.get((kind, key))
        return bucket is not None and bucket.refusals >= self.limits.cut_after

    async def acquire(self, kind: str, cost: float = 1.0, key: str | None = None) -> None:
        """Wait for ``cost`` tokens of ``kind`` for the current caller (asyncio side).

        Raises:
            RateLimited: the caller is too far over its rate (``RESOURCE_EXHAUSTED``).
        """
        who = caller.get() if key is None else key
        if not who:
            return  # not a network call (tests calling handlers directly)
        wait = self.reserve(kind, who, cost)
        if wait is None:
            raise RateLimited(f"rate limit: too many {kind} requests from this connection",
                              cut=self.should_cut(kind, who))
        if wait > 0:
            await asyncio.sleep(wait)


def caller_key(peer: Any) -> str:
    """``host:port`` of a grpclib ``Peer`` (the far end of the connection)."""
    address = peer.addr() if peer is not None else None
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return "local"
