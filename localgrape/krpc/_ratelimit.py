"""Per-address token buckets bounding the work one source can cause; pure."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RateLimiter"]


class RateLimiter:
    """Allow each key ``rate`` events per second with bursts up to ``burst``.

    Memory is bounded: at most ``max_keys`` keys are tracked, the least
    recently active one is forgotten first (it gets a full bucket back, which
    is harmless: a flood keeps its own key hot).

    Args:
        rate: sustained events per second per key.
        burst: bucket capacity.
        max_keys: tracked keys at most.
    """

    def __init__(self, rate: float, burst: float, *, max_keys: int = 4096) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate, burst and max_keys must be positive")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[object, tuple[float, float]] = OrderedDict()

    def allow(self, key: object, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` from ``key``'s bucket at time ``now``; False if empty."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
