"""Events the ledger has applied whose commit has not come back yet: kept out of sight.

The node applies an event to its ledger before the event is on disk: the ledger
must know seq N before it can check and number seq N + 1, and concurrent events
share one group commit. Until the commit comes back, such an event is *in flight*:
:class:`InFlight` keeps it out of everything others see (heads, views, counts;
pushes, watchers and replies already wait for the commit). When commits fail, the
store refuses everything after the failed one (:class:`peer.storage.store.EventStore`), so
the events that failed are the newest ones the ledger applied; once every commit in
flight has come back, :meth:`InFlight.take_failed` hands them over to be undone,
newest first, and memory is again exactly what is on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import trio

from peer.core.auctions import Auction, AuctionKey, BidAccepted, Closed, Notification, Opened
from peer.core.ledger import LoggedEvent

__all__ = ["Commit", "InFlight"]


@dataclass(eq=False, slots=True)
class Commit:
    """One group of applied events on its way to disk (one ``store.append``).

    Attributes:
        events: The events, in the order the ledger applied them.
        notes: Their notifications, one per event.
        done: The commit came back.
        failed: It came back with an error: the events are not on disk.
    """

    events: list[LoggedEvent]
    notes: list[Notification]
    done: bool = False
    failed: bool = False
    _finished: trio.Event = field(default_factory=trio.Event)

    async def wait(self) -> None:
        """Wait until the commit has come back (see ``failed``)."""
        await self._finished.wait()


@dataclass(slots=True)
class _Trim:
    """What an auction's in-flight events added to it."""

    opened: bool = False
    bids: int = 0
    closed: bool = False


class InFlight:
    """The commits in flight, oldest first (the order their events were applied)."""

    def __init__(self) -> None:
        self._commits: list[Commit] = []
        self._slots: dict[tuple[bytes, int], Commit] = {}

    def __len__(self) -> int:
        """How many events are in flight."""
        return len(self._slots)

    def begin(self, events: list[LoggedEvent], notes: list[Notification]) -> Commit:
        """Record events just applied, before their append; the order of calls matters."""
        commit = Commit(events, notes)
        self._commits.append(commit)
        for event in events:
            self._slots[(event.author, event.seq)] = commit
        return commit

    def succeeded(self, commit: Commit) -> None:
        """The commit is on disk: its events are visible from now on."""
        self._commits.remove(commit)
        for event in commit.events:
            del self._slots[(event.author, event.seq)]
        commit.done = True
        commit._finished.set()

    def failed(self, commit: Commit) -> None:
        """The commit failed: its events stay out of sight until they are undone."""
        commit.done = commit.failed = True
        commit._finished.set()

    def take_failed(self) -> list[LoggedEvent]:
        """Once every commit in flight has come back: the events of the failed ones,
        newest first, to undo in that order (they are forgotten here). Empty while any
        commit is still out, or when none failed.

        Raises:
            AssertionError: A commit succeeded after one that failed (the store
                broke its promise; undoing would not give what is on disk).
        """
        if not self._commits or not all(c.done for c in self._commits):
            return []
        failed, self._commits = self._commits, []
        assert all(c.failed for c in failed), "a commit succeeded after a failed one"
        self._slots.clear()
        return [e for c in reversed(failed) for e in reversed(c.events)]

    def commits(self) -> list[Commit]:
        """The commits in flight now, oldest first (a copy)."""
        return list(self._commits)

    def holding(self, author: bytes, seq: int) -> Commit | None:
        """The commit in flight that carries this event, if any."""
        return self._slots.get((author, seq))

    def durable_heads(self, heads: dict[bytes, int]) -> dict[bytes, int]:
        """``heads`` (the ledger's) without the seqs in flight."""
        if not self._slots:
            return heads
        durable = dict(heads)
        for author, seq in self._slots:
            if seq <= durable.get(author, 0):
                durable[author] = seq - 1
        return {a: s for a, s in durable.items() if s > 0}

    def durable_auctions(self, auctions: list[Auction]) -> list[Auction]:
        """``auctions`` as they are on disk: in-flight opens left out, in-flight bids
        and closes taken off (copies; the ledger's own objects are never changed)."""
        if not self._slots:
            return auctions
        trims: dict[AuctionKey, _Trim] = {}
        for commit in self._commits:
            for note in commit.notes:
                trim = trims.setdefault(note.at.live.key, _Trim())
                if type(note) is Opened:
                    trim.opened = True
                elif type(note) is BidAccepted:
                    trim.bids += 1
                else:
                    assert type(note) is Closed
                    trim.closed = True
        durable: list[Auction] = []
        for auction in auctions:
            found = trims.get(auction.key)
            if found is None:
                durable.append(auction)
            elif not found.opened:
                bids = auction.bids[:len(auction.bids) - found.bids]
                ends_ms = auction.ends_ms
                if found.bids and auction.terms.extend_ms:
                    # As Ledger.undo: the end is the latest one the remaining bids set;
                    # an auction's Accepts are stamped in order, so the last one's.
                    window = auction.terms.extend_ms
                    ends_ms = max(auction.terms.ends_at_ms,
                                  bids[-1].time_ms + window if bids else 0)
                if found.closed:
                    durable.append(replace(auction, bids=bids, ends_ms=ends_ms, closed=False,
                                           closed_ms=None))
                else:
                    durable.append(replace(auction, bids=bids, ends_ms=ends_ms))
        return durable
