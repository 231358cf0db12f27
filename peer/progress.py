"""Progress of a node's initial sync, for people (a terminal line) and scripts (JSON).

A node joining a busy network may pull tens of thousands of events before it is
ready; without this it says nothing for seconds. What the peers hold comes from
their Hello replies (their heads), so "what is left" needs no extra round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import trio

__all__ = ["ProgressSink", "SyncProgress", "expected_events"]


class ProgressSink(Protocol):
    def progress(self, synced: int, expected: int, rate: float) -> None: ...

    def end_progress(self) -> None: ...


def expected_events(ours: Mapping[bytes, int], theirs: Iterable[Mapping[bytes, int]]) -> int:
    """How many events the peers announced beyond our heads (per author, the most
    any peer has)."""
    best: dict[bytes, int] = {}
    for heads in theirs:
        for author, seq in heads.items():
            if seq > best.get(author, 0):
                best[author] = seq
    return sum(max(0, seq - ours.get(author, 0)) for author, seq in best.items())


class SyncProgress:
    """Counts the events applied during the initial sync; :meth:`report` shows them."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.synced = 0

    def add(self, count: int) -> None:
        self.synced += count
        # Peers that gained events since their Hello: never show "-5 to go".
        self.expected = max(self.expected, self.synced)

    async def report(self, sink: ProgressSink, interval: float) -> None:
        """Report every ``interval`` seconds until cancelled, then end the progress line
        (a sync shorter than ``interval`` reports nothing)."""
        start = trio.current_time()
        try:
            while True:
                await trio.sleep(interval)
                elapsed = trio.current_time() - start
                sink.progress(self.synced, self.expected, self.synced / elapsed)
        finally:
            sink.end_progress()
