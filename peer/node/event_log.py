"""How an event enters a node: applied, made durable, and only then heard of.

Every change goes the same way: the ledger (pure rules) applies it in memory, the
store makes it durable, and only then is it acknowledged, pushed to peers and
announced to watchers. Until its commit comes back an event is in flight
(:mod:`peer.storage.in_flight`): heads, views and counts leave it out; a commit that
fails is undone in the ledger, so memory never holds what the disk does not.
"""

from __future__ import annotations

import logging

import trio

from peer.core.auctions import BidAccepted, best_bid_only
from peer.core.ledger import ApplyResult, LoggedEvent
from peer.core.rules import Rejection
from peer.core.signed_events import DecodedEvent, sign_event
from peer.gen.auction.v1 import Accept, Close, Head, Notification, Open, RejectCode, SignedEvent
from peer.net.batch_verify import IncomingBatch
from peer.net.mesh import PeerLink
from peer.net.notifications import LedgerNotification, notification_message
from peer.net.rpc import BadInput, StorageUnavailable
from peer.net.sync import pull
from peer.node.state import NodeState
from peer.storage.in_flight import Commit
from peer.storage.rows import StoredEvent
from peer.storage.store_errors import StoreError, StoreUnavailable

log = logging.getLogger(__name__)


# A peer's event stamped this far ahead of our clock is logged: its auctions end by its
# clock, so our "time left" is off by as much (README: clock skew).
CLOCK_SKEW_WARNING_MS = 30_000


# Rejections that mean the bytes themselves are bad, not that the event lost a race.
_MALFORMED = frozenset({RejectCode.BAD_SIGNATURE, RejectCode.BAD_EVENT})


class EventLog(NodeState):
    """Apply, persist, announce: the one road every event takes, own or received."""

    def heads(self) -> list[Head]:
        return [Head(author=a, seq=s) for a, s in self._durable_heads().items()]

    def _durable_heads(self) -> dict[bytes, int]:
        return self._in_flight.durable_heads(self.ledger.heads())

    async def ingest(self, events: list[SignedEvent], source: PeerLink | None) -> int:
        """Apply events from a peer, make them durable, then notify. Returns how many were new.

        When an event is held behind a gap, the sender is asked for what we lack.
        """
        batch = self.prepare(events)
        await batch.verify()
        return await self.commit(batch, source)

    def prepare(self, events: list[SignedEvent]) -> IncomingBatch:
        """Decode ``events`` once and drop the known ones; see :meth:`commit`.

        Sync pipelines its pages: page N + 1 is prepared and verified (the batch's
        ``verify`` runs in a task) while page N is committed.
        """
        return IncomingBatch.prepare(self.ledger, events)

    async def commit(self, batch: IncomingBatch, source: PeerLink | None) -> int:
        """The rest of :meth:`ingest`: apply ``batch``, persist, notify. Returns how many
        events were new.

        Raises:
            BadInput: Some events were malformed or forged (after the others were
                applied and made durable).
        """
        applied: list[LoggedEvent] = []
        notes: list[LedgerNotification] = []
        held = False
        malformed: list[Rejection] = list(batch.malformed)
        checked = await batch.verified()
        # From here to the append in _persist nothing awaits: events reach the store
        # in the order the ledger applied them, which undoing a failure relies on.
        self._refuse_while_failed()
        apply = self.ledger.apply_decoded
        in_flight = self._in_flight
        pending: set[Commit] = set()  # commits in flight that hold events this batch repeated
        todo: list[tuple[DecodedEvent, bool]] = []
        for decoded in batch.known:
            fields = decoded.fields
            holder = in_flight.holding(fields.author, fields.seq) if in_flight else None
            if holder is not None:
                pending.add(holder)
            elif not self.ledger.is_applied(decoded):
                todo.append((decoded, False))  # undone since prepare(): apply it again
        todo.extend((decoded, checked is not None and checked[index])
                    for index, decoded in enumerate(batch.events))
        for decoded, verified in todo:
            result = apply(decoded, verified=verified)
            if result.applied:
                applied.extend(result.applied)
                notes.extend(result.notifications)
            elif result.held:
                held = True
            elif result.duplicate and in_flight:
                fields = decoded.fields
                holder = in_flight.holding(fields.author, fields.seq)
                if holder is not None:
                    pending.add(holder)
            if result.rejection is not None:
                if result.rejection.code in _MALFORMED:
                    malformed.append(result.rejection)
                else:
                    log.info("event from %s not applied: %s",
                             source.address if source else "a peer", result.rejection)
        if applied:
            # Durable before anyone hears of it: watchers, peers, the sender.
            await self._persist(applied, notes)
            if self._sync_progress is not None:
                self._sync_progress.add(len(applied))
            if self.ledger.has_timed_open or self._ended_announced:
                self._deadlines_changed.set()
                self._check_skew(applied)
            if self._ready or self._watchers:  # else nobody hears of them (initial sync)
                for note in notes:
                    self._notify(note)
        for holder in pending:
            # Events we had already applied but not yet stored: the sender is told
            # "durable" only once they are.
            await holder.wait()
            if holder.failed:
                raise self._unavailable("an earlier commit failed")
        if held and source is not None and self._nursery is not None and self.mesh is not None:
            mesh = self.mesh
            self._nursery.start_soon(self._pull_gate.pull_once, source,
                                     lambda: pull(self, mesh, source))
        if malformed:
            raise BadInput(f"{len(malformed)} event(s) refused, first: {malformed[0]}")
        return len(applied)

    async def _persist(self, events: list[LoggedEvent], notes: list[LedgerNotification]
                       ) -> None:
        """Make ``events``, just applied by the ledger, durable; or take them back.

        Call it with nothing awaited since the events were applied. On failure the
        events (and every later one, which the store fails too) are undone in the
        ledger once every commit in flight has come back.

        Raises:
            StorageUnavailable: The commit failed; the events are not on disk.
        """
        assert self.store is not None
        commit = self._in_flight.begin(events, notes)
        rows = [StoredEvent(e.author, e.seq, e.signed.event, e.signed.signature)
                for e in events]
        try:
            # Never withdrawn once called, even if our caller is cancelled
            # (EventStore.append), so this always learns the outcome.
            await self.store.append(rows)
        except BaseException as exc:
            self._in_flight.failed(commit)
            self._undo_failed()
            if isinstance(exc, (StoreError, OSError)):
                raise self._storage_failed(exc) from exc
            raise
        self._in_flight.succeeded(commit)
        self._storage_recovered()
        self._undo_failed()  # later commits may have failed and come back first

    async def _settle_in_flight(self) -> None:
        """Wait until every commit in flight now has come back (and failed ones are
        undone), so that the ledger holds only what is on disk, up to what comes after."""
        commits = self._in_flight.commits()
        for commit in commits:
            await commit.wait()
        if any(commit.failed for commit in commits):
            # Failed ones are undone once every commit in flight is back; the later
            # ones fail too (the store refuses until then), so this is quick.
            for commit in self._in_flight.commits():
                await commit.wait()

    def _undo_failed(self) -> None:
        """Once every commit in flight is back, undo the events of the failed ones."""
        undo = self._in_flight.take_failed()
        if not undo:
            return
        for event in undo:
            self.ledger.undo(event)
        log.debug("%s: %d event(s) not stored were taken back out of memory",
                    self.config.name, len(undo))
        assert self.store is not None
        self.store.resume()  # the next write tries the disk again

    def _refuse_while_failed(self) -> None:
        """Refuse a write while a failed commit is not yet undone.

        Raises:
            StorageUnavailable: The store refuses appends until the undo is done.
        """
        assert self.store is not None
        failure = self.store.failure
        if failure is not None:
            raise self._unavailable(failure.reason)

    def _storage_failed(self, exc: BaseException) -> StorageUnavailable:
        """Log the start of an outage (once) and say why writes are refused."""
        reason = exc.reason if isinstance(exc, StoreUnavailable) else str(exc)
        if self._storage_outage is None:
            self._storage_outage = reason
            log.error("%s: cannot write the event log; refusing writes, serving reads and"
                      " syncs, until it can: %s", self.config.name, exc)
        return self._unavailable(reason)

    def _storage_recovered(self) -> None:
        if self._storage_outage is not None:
            log.info("%s: the event log is writable again (it was not: %s)", self.config.name,
                     self._storage_outage)
            self._storage_outage = None

    def _unavailable(self, reason: str) -> StorageUnavailable:
        return StorageUnavailable(f"{self.config.name} cannot write its event log: {reason}",
                                  reason)

    def _stamp(self) -> int:
        """The time our next event carries: now, but never before our previous event."""
        assert self.identity is not None
        return self.ledger.stamp(self.identity.node_id, self.wall_clock_ms())

    async def _author(self, *, open: Open | None = None, accept: Accept | None = None,
                      close: Close | None = None, time_ms: int | None = None) -> LoggedEvent:
        """Create, sign, apply and persist one event of our own log, then push it.

        ``time_ms`` is the stamp the caller checked the event against (default
        :meth:`_stamp`); there must be no await between that check and this call.

        Raises:
            StorageUnavailable: The event could not be stored; nothing of it remains.
        """
        assert self.identity is not None
        self._refuse_while_failed()
        stamp = self._stamp() if time_ms is None else time_ms
        event = self.ledger.next_event(self.identity.node_id, self.config.name, stamp,
                                       open=open, accept=accept, close=close)
        signed = sign_event(self.identity, event)
        # Our own signature, just made, over a body that check_* validated (a bid's
        # signature included): checking them again would only cost time.
        result = self.ledger.apply(signed, verified=True)
        if result.rejection is not None:  # check_* ran first; this is a bug, not input
            raise RuntimeError(f"own event refused: {result.rejection}")
        # Reserved before the first await, so in seq order: concurrent authors resume
        # from the group commit in any order, but peers and watchers hear in seq order.
        slot = self._own_events.reserve()
        try:
            await self._persist(result.applied, result.notifications)
        except BaseException:
            self._announce_own(self._own_events.fill(slot, None))
            raise
        self._announce_own(self._own_events.fill(slot, result))
        # Our next seq never waits behind a gap: the one applied event is this one.
        return result.applied[0]

    def _announce_own(self, results: list[ApplyResult]) -> None:
        """Push our own durable events to every peer and tell watchers, in seq order."""
        if self.ledger.has_timed_open or self._ended_announced:
            self._deadlines_changed.set()
        for result in results:
            if self.mesh is not None:
                # The node that placed a bid got our Accept of it in our reply; a push
                # would only be decoded and dropped there. Should the reply have been
                # lost, it learns of the Accept by the gap before our next event, or by
                # anti-entropy.
                bidder = next((note.bid.bidder for note in result.notifications
                               if type(note) is BidAccepted), b"")
                self.mesh.broadcast([e.signed for e in result.applied], skip=bidder)
            for note in result.notifications:
                self._notify(note)

    def _check_skew(self, applied: list[LoggedEvent]) -> None:
        """Log once per author whose events are stamped far ahead of our clock."""
        now = self.wall_clock_ms()
        for author in {event.author for event in applied} - self._skew_warned:
            last = self.ledger.last_stamp(author)
            if last is not None and last - now > CLOCK_SKEW_WARNING_MS:
                self._skew_warned.add(author)
                log.warning("%s stamps its events %.0f s ahead of this node's clock: its "
                            "auctions end by its clock, so the time left shown here is off",
                            self.ledger.names().get(author, author.hex()[:8]),
                            (last - now) / 1000)

    def _notify(self, note: LedgerNotification) -> None:
        if self._ready:
            # Before ready, the events being synced are summed up in the ready line
            # instead: a node joining a busy network would print its whole history.
            # The line shows the auction and its best bid only: rendering every bid
            # (as a watcher's view has them) would cost O(bids) per line.
            self.reports.notification(notification_message(best_bid_only(note)))
        if self._watchers:
            self._send_watchers(notification_message(note))

    def _send_watchers(self, message: Notification) -> None:
        for send in list(self._watchers):
            try:
                send.send_nowait(message)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                send.close()
                self._watchers.remove(send)

    def _close_watchers(self) -> None:
        for send in self._watchers:
            send.close()
        self._watchers.clear()
