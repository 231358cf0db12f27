"""The open timed auctions by current end: the next end to act on, without a sort.

A node's deadline loop asks, after every applied event, which open timed auctions
have ended and when the next one ends. Sorting every open timed auction each time
costs O(n log n) per event: with thousands of them open and a bid every millisecond,
that is most of the node's time. :class:`EndQueue` keeps them in a binary heap of
``(end, key)`` instead. A moved end (an anti-sniping extension, an undone bid) pushes
a new entry and leaves the old one in place, stale; a closed auction only leaves the
map of current ends. Stale entries are dropped when they reach the top, and the heap
is rebuilt from the current ends when stale ones outnumber them, so it never holds
more than about twice as many entries as there are open timed auctions.

Costs: moving or adding an end O(log n); :meth:`EndQueue.due` O((k + 1) log n) for
k auctions past their end (plus the stale entries it drops, each dropped once).
"""

from __future__ import annotations

import heapq
from typing import Final

from peer.core.auctions import AuctionKey

__all__ = ["EndQueue"]

# Rebuild once the heap holds this many entries beyond twice the live ones.
_SLACK: Final = 64


class EndQueue:
    """Current end per open timed auction, soonest first (ties: by key)."""

    __slots__ = ("_ends", "_heap")

    def __init__(self) -> None:
        self._ends: dict[AuctionKey, int] = {}
        self._heap: list[tuple[int, AuctionKey]] = []

    def __len__(self) -> int:
        return len(self._ends)

    def __contains__(self, key: AuctionKey) -> bool:
        return key in self._ends

    def set(self, key: AuctionKey, end_ms: int) -> None:
        """Add ``key`` with this end, or move its end."""
        if self._ends.get(key) == end_ms:
            return
        self._ends[key] = end_ms
        heap = self._heap
        heapq.heappush(heap, (end_ms, key))
        if len(heap) > 2 * len(self._ends) + _SLACK:
            self._heap = [(end, k) for k, end in self._ends.items()]
            heapq.heapify(self._heap)

    def move(self, key: AuctionKey, end_ms: int) -> None:
        """Move ``key``'s end if it is queued (an auction already closed stays out)."""
        if key in self._ends:
            self.set(key, end_ms)

    def discard(self, key: AuctionKey) -> None:
        """Forget ``key`` (closed, or its Open undone); its entries go stale."""
        self._ends.pop(key, None)

    def in_order(self) -> list[AuctionKey]:
        """Every key, soonest end first: a sort, for the rare caller that wants all."""
        return [key for _, key in sorted((end, key) for key, end in self._ends.items())]

    def due(self, now_ms: int) -> tuple[list[AuctionKey], int | None]:
        """The keys whose end is at or before ``now_ms``, soonest first, and the
        soonest end after ``now_ms`` (None: no other end)."""
        heap, ends = self._heap, self._ends
        due: list[tuple[int, AuctionKey]] = []
        while heap and heap[0][0] <= now_ms:
            entry = heapq.heappop(heap)
            # Live if it is the key's current end; an end that moved away and back
            # leaves two equal entries, which pop one after the other.
            if ends.get(entry[1]) == entry[0] and (not due or due[-1] != entry):
                due.append(entry)
        while heap and ends.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        following = heap[0][0] if heap else None
        for entry in due:  # still open: they stay queued until closed or moved
            heapq.heappush(heap, entry)
        return [key for _, key in due], following
