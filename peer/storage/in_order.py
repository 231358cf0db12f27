"""Hand results on in the order their work started, whatever order it finished in.

The node's own events get their seq when they are applied, one after another,
but are made durable by group commits whose callers resume in whatever order
trio schedules them. Pushing them in that order sent seq N + 1 before N: every
peer then held N + 1 behind a gap and pulled the seller's log to fill it, which
cost both sides a Sync stream per bid under load.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

__all__ = ["InOrder", "Slot"]

T = TypeVar("T")


class Slot(Generic[T]):
    """A place in line, handed out by :meth:`InOrder.reserve`."""

    __slots__ = ("filled", "value")

    def __init__(self) -> None:
        self.filled = False
        self.value: T | None = None


class InOrder(Generic[T]):
    """Slots reserved in order; values come out in that order once filled.

    A slot filled with None (its work failed) is skipped, never waited for.
    """

    def __init__(self) -> None:
        self._line: deque[Slot[T]] = deque()

    def reserve(self) -> Slot[T]:
        slot: Slot[T] = Slot()
        self._line.append(slot)
        return slot

    def fill(self, slot: Slot[T], value: T | None) -> list[T]:
        """Fill ``slot``; returns every value now at the head of the line, in order."""
        if slot.filled:
            raise ValueError("slot filled twice")
        slot.filled, slot.value = True, value
        ready: list[T] = []
        while self._line and self._line[0].filled:
            head = self._line.popleft()
            if head.value is not None:
                ready.append(head.value)
        return ready

    def __len__(self) -> int:
        """Slots reserved and not yet handed on."""
        return len(self._line)
