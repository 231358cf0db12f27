"""Jittered exponential backoff for peers that stopped answering."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay before the next probe of a failed peer: base * 2**n, capped, +-20% jitter.

    Jitter keeps many nodes that lost the same peer from probing it in lock-step.
    """

    base: float = 0.5
    cap: float = 30.0
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2.0 ** min(self.failures, 30)))
        self.failures += 1
        jitter: float = self.rng.uniform(0.8, 1.2)
        return delay * jitter

    def reset(self) -> None:
        self.failures = 0
