"""One auction node: wires identity, ledger, store, mesh, sync and RPC into one nursery.

The node owns all state. Every change goes the same way: the ledger (pure
rules) applies it in memory, the store makes it durable, and only then is it
acknowledged, pushed to peers and announced to watchers (DESIGN.md sections
3-6). Until its commit comes back an event is in flight (:mod:`peer.storage.in_flight`):
heads, views and counts leave it out; a commit that fails is undone in the
ledger, so memory never holds what the disk does not.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio
from grpclib.health.service import Health

from grape_client import GrapeClient, GrapeClientError, announce_forever
from peer.config import NodeConfig
from peer.core.auctions import Auction, AuctionKey, best_bid_only
from peer.core.bid_replies import signed_rejection
from peer.core.handshake import Challenges, HandshakeError, same_endpoint, verify_caller
from peer.core.identity import Identity, verify
from peer.core.ledger import ApplyResult, Ledger, LoggedEvent
from peer.core.rules import Rejection, format_amount, parse_amount
from peer.core.sealed_reserve import Sealed, open_box, seal
from peer.core.signed_events import DecodedEvent, decode_signed, make_signed_bid, sign_event
from peer.gen.auction.v1 import (
    Accept,
    BidRequest,
    BidView,
    Close,
    CloseRequest,
    ControlReply,
    Goodbye,
    Head,
    HelloReply,
    HelloRequest,
    LeaveRequest,
    ListReply,
    ListRequest,
    Notification,
    NotificationKind,
    Open,
    OpenRequest,
    PeerStatus,
    PlaceBidReply,
    ProveReply,
    ProveRequest,
    PushReply,
    PushRequest,
    RejectCode,
    ShowRequest,
    SignedBid,
    SignedEvent,
    StatusReply,
    SyncReply,
    SyncRequest,
)
from peer.gen.auction.v1 import Fork as ForkMsg
from peer.gen.auction.v1 import Rejection as RejectionMsg
from peer.net import aio
from peer.net.address_book import AddressLimits
from peer.net.batch_verify import IncomingBatch
from peer.net.codec import LimitedCodec
from peer.net.control_socket import prepare_to_listen
from peer.net.mesh import Mesh, PeerLink
from peer.net.notifications import LedgerNotification, ended_message, notification_message
from peer.net.rate_limit import PeerRateLimiter
from peer.net.rpc import BadInput, ControlService, PeerService, StorageUnavailable
from peer.net.self_check import FAILED, NOT_RUN, SelfCheck, check_self
from peer.net.server import Server
from peer.net.sync import PAGE_SIZE, PullGate, anti_entropy, pull, pull_from_all
from peer.net.views import auction_view, bid_page, summary_view
from peer.net.warn_once import WarnOnce
from peer.progress import SyncProgress, expected_events
from peer.reports import NodeReports, Quiet
from peer.startup import CannotListen, cannot_listen
from peer.storage import paths, port_memory
from peer.storage.data_dir_identity import StartIdentity
from peer.storage.dir_lock import DataDirLock
from peer.storage.in_flight import Commit, InFlight
from peer.storage.in_order import InOrder
from peer.storage.names import record_owner
from peer.storage.store import EventStore, StoredEvent, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

WATCH_BUFFER = 256
# After a failed automatic close (storage trouble), try again this much later.
CLOSE_RETRY_DELAY = 1.0
# A peer's event stamped this far ahead of our clock is logged: its auctions end by its
# clock, so our "time left" is off by as much (README: clock skew).
CLOCK_SKEW_WARNING_MS = 30_000
# How long start-up waits for peers to answer Hello before syncing from those that did.
INITIAL_PROBE_WAIT = 1.0
# How long a stopping node waits for its servers' handlers to end (they are cancelled).
STOP_WAIT = 5.0
# How often the self-check runs again once it passed: an address can change (DHCP,
# a moved host); while it fails, it runs every announce interval.
SELF_CHECK_RECHECK = 60.0
# Per-phase timeout of the node's Grape calls (GrapeClient's default is 2.5 s). A real
# grape answers a lookup or announce only when its DHT traversal ends, and a DHT
# node that vanished costs that traversal k-rpc's 2 s query timeout, checked every
# 0.5 s: measured 2.5 s, and 4.7 s for the first lookup after the loss. At 2.5 s every
# lookup raced the timeout and lost under load: no self-check, no peers found.
GRAPE_TIMEOUT = 6.0

# (index into the sorted authors still to send, last seq sent of that author)
SyncCursor = tuple[int, int]


@dataclass(frozen=True)
class ReadyInfo:
    """What a started node reports (``nursery.start(node.run)`` returns it)."""

    name: str
    node_id: bytes
    port: int
    synced: int
    control_socket: Path


# Rejections that mean the bytes themselves are bad, not that the event lost a race.
_MALFORMED = frozenset({RejectCode.BAD_SIGNATURE, RejectCode.BAD_EVENT})


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _jitter() -> float:
    return random.uniform(0.8, 1.2)


def _rejected(rejection: Rejection) -> ControlReply:
    return ControlReply(rejected=RejectionMsg(code=rejection.code, reason=rejection.reason))


class Node:
    """A running auction node. ``await nursery.start(Node(config).run)``."""

    def __init__(self, config: NodeConfig, reports: NodeReports | None = None, *,
                 wall_clock_ms: Callable[[], int] = _now_ms) -> None:
        """``wall_clock_ms`` is the clock events are stamped with and auctions end by
        (ms since the epoch); tests pass one that follows trio's MockClock.
        ``reports`` hears what the node has to say to whoever runs it (nothing by
        default: `serve` passes the CLI's printer)."""
        self.config = config
        self.wall_clock_ms = wall_clock_ms
        self.reports: NodeReports = reports if reports is not None else Quiet()
        self.ledger = Ledger()
        self.identity: Identity | None = None
        self.store: EventStore | None = None
        self.mesh: Mesh | None = None
        self.port = 0
        self._watchers: list[trio.MemorySendChannel[Notification]] = []
        self._pull_gate = PullGate()
        self._nursery: trio.Nursery | None = None
        self._nonce = random.getrandbits(48)
        self._ready = False
        self._own_events: InOrder[ApplyResult] = InOrder()
        self.self_check: SelfCheck = NOT_RUN
        self._in_flight = InFlight()
        self._storage_outage: str | None = None  # why the log cannot be written, if so
        self._challenges = Challenges()
        self._unproven_callers = WarnOnce(log)
        self._sync_progress: SyncProgress | None = None
        # Set whenever events are applied: an end may have moved or a timed auction opened.
        self._deadlines_changed = trio.Event()
        # Other sellers' auctions already announced as ended (awaiting their Close).
        self._ended_announced: set[AuctionKey] = set()
        self._skew_warned: set[bytes] = set()

    # ================================================================== lifecycle

    async def run(self, *, task_status: trio.TaskStatus[ReadyInfo] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run until cancelled; ``started()`` is called only after the initial sync."""
        config = self.config
        # Before the key or the database is touched: a second node on this data dir
        # would append to the same log with the same key.
        with DataDirLock.acquire(config.data_dir):
            store = EventStore.open(paths.database_path(config.data_dir))
            self.store = store
            start: StartIdentity | None = None
            try:
                try:
                    record_owner(config.data_dir, config.name)
                except OSError as exc:
                    # Only a hint for finding data dirs older versions made: a data
                    # dir that is full or read-only still serves what it holds.
                    log.warning("%s: cannot record the node's name in %s: %s", config.name,
                                paths.owner_path(config.data_dir), exc)
                start = StartIdentity.open(config.data_dir, config.name, store)
                self.identity = start.identity
                rebuilt = self._rebuild(store)
                log.info("%s: %d event(s) loaded from %s", config.name, rebuilt,
                         paths.database_path(config.data_dir))
                # The loop closes first: it waits for the Peer handlers still running (a
                # Sync page, a Push), which use the store until then.
                async with store, aio.open_loop() as loop:
                    # A seller that was offline at an auction's end closes it first
                    # thing, before its servers take any bid.
                    await self.close_overdue()
                    await self._serve(aio.Bridge(loop), task_status)
            finally:
                store.close()
                if (start is not None and start.created and not self._ready
                        and start.identity.node_id not in self.ledger.heads()):
                    log.info("%s: the first start failed; its new key and database were "
                             "removed", config.name)
                    start.abandon()

    def _rebuild(self, store: EventStore) -> int:
        # Rows were verified before they were stored and carry a CRC, so the
        # signature check is skipped here: that is what keeps restarts fast.
        count = 0
        for row in store.load_all():
            result = self.ledger.apply(SignedEvent(event=row.data, signature=row.signature),
                                       verified=True)
            if result.rejection is not None:
                log.warning("stored event %s:%d not applied: %s", row.author.hex()[:8],
                            row.seq, result.rejection)
            count += 1
        return count

    async def _serve(self, bridge: aio.Bridge, task_status: trio.TaskStatus[ReadyInfo]
                     ) -> None:
        config = self.config
        assert self.identity is not None
        health = Health()
        peer_server = Server([PeerService(self, PeerRateLimiter(config.rate_limits)), health],
                             codec=LimitedCodec(),
                             limits=self.config.transport_limits)
        control_server = Server([ControlService(self)], codec=LimitedCodec())
        socket_path = paths.control_socket_path(config.data_dir)
        async with GrapeClient(list(config.grape_urls), timeout=GRAPE_TIMEOUT) as grape:
            try:
                self.port = await self._bind_peer_server(peer_server)
            except OSError as exc:
                raise cannot_listen(config.host, config.port, exc) from exc
            try:
                prepare_to_listen(socket_path)
                # Only this user may drive the node: create the socket 0600 from the start.
                old_umask = os.umask(0o177)
                try:
                    await aio.start_server(control_server, path=str(socket_path))
                except OSError as exc:
                    raise CannotListen(f"cannot create the control socket {socket_path}: "
                                       f"{exc.strerror or exc}") from exc
                finally:
                    os.umask(old_umask)
                try:
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        self.mesh = Mesh(self.identity,
                                         f"{config.host}:{self.port}", self, bridge,
                                         AddressLimits(config.max_addresses,
                                                       config.max_new_addresses_per_lookup,
                                                       config.forget_after))
                        self.mesh.liveness_idle = config.liveness_interval
                        await nursery.start(self.mesh.run)
                        announcer = functools.partial(announce_forever, grape, config.service,
                                                      self.port,
                                                      interval=config.announce_interval)
                        await nursery.start(announcer)
                        await self._check_self(grape)
                        nursery.start_soon(self._self_check_loop, grape)
                        synced = await self._initial_sync(grape)
                        nursery.start_soon(self._discovery_loop, grape)
                        nursery.start_soon(anti_entropy, self, self.mesh,
                                           config.anti_entropy_interval, _jitter)
                        nursery.start_soon(self.deadline_loop)
                        self._ready = True
                        info = ReadyInfo(config.name, self.identity.node_id, self.port,
                                         synced, socket_path)
                        self.reports.ready(info.name, info.node_id, info.port, synced,
                                          self.ledger.event_count, str(socket_path),
                                          self.self_check)
                        task_status.started(info)
                        try:
                            await trio.sleep_forever()
                        finally:
                            with trio.CancelScope(shield=True):
                                await self._goodbye()
                finally:
                    # First, before any await: a stop by signal arrives as a
                    # cancellation, and the first checkpoint would end this block.
                    # The data dir's lock, still held, makes the socket ours.
                    socket_path.unlink(missing_ok=True)
                    with trio.move_on_after(STOP_WAIT, shield=True):
                        await aio.stop_server(control_server)
            finally:
                with trio.move_on_after(STOP_WAIT, shield=True):
                    await aio.stop_server(peer_server)
                self._close_watchers()
                if self.mesh is not None:
                    # Calls cancelled mid-flight may have reopened a channel.
                    self.mesh.close_channels(final=True)

    async def _bind_peer_server(self, server: Server) -> int:
        """Start the public server; returns its port.

        ``--port P`` binds P. Otherwise the port picked on an earlier start is reused
        (it is remembered in the data dir), so the node keeps one address; when that
        port is taken, a new one is picked and remembered instead.
        """
        config = self.config
        if config.port:
            await aio.start_server(server, host=config.host, port=config.port)
            return config.port
        remembered = port_memory.recall(config.data_dir)
        if remembered is not None:
            try:
                await aio.start_server(server, host=config.host, port=remembered)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise  # e.g. a --host that is not ours: a new port would fail the same
                log.warning("%s: port %d (remembered from the last start) is taken; "
                            "picking a new one", config.name, remembered)
            else:
                log.info("%s: reusing port %d from the last start", config.name, remembered)
                return remembered
        await aio.start_server(server, host=config.host, port=0)
        port = server.port
        try:
            port_memory.remember(config.data_dir, port)
        except OSError as exc:
            # Not fatal: the node works, it only gets a new address next time.
            log.warning("%s: cannot remember port %d in %s (%s): the next start picks "
                        "another one", config.name, port, config.data_dir, exc)
        else:
            log.info("%s: picked port %d; later starts reuse it (pass --port to choose)",
                     config.name, port)
        return port

    async def _check_self(self, grape: GrapeClient) -> None:
        """Run the self-check once; log when its outcome changes (a WARNING with the fix
        when it fails)."""
        assert self.identity is not None and self.mesh is not None
        config = self.config
        result = await check_self(functools.partial(grape.lookup, config.service),
                                  self.mesh.who_is_at, self.identity.node_id, self.port,
                                  config.host, service=config.service)
        before, self.self_check = self.self_check, result
        if result.passed:
            # Discovery then skips our own record instead of probing it as a peer.
            self.mesh.own_address = result.address
        if result.passed and before != result:
            log.info("%s: self-check passed: peers reach this node at %s", config.name,
                     result.address)
        elif result.state == FAILED and (before.state, before.detail) != (FAILED,
                                                                            result.detail):
            log.warning("%s: self-check FAILED, other nodes cannot reach this one: %s",
                        config.name, result.detail)

    async def _self_check_loop(self, grape: GrapeClient) -> None:
        while True:
            wait = SELF_CHECK_RECHECK if self.self_check.passed else self.config.announce_interval
            await trio.sleep(wait * _jitter())
            await self._check_self(grape)

    async def _initial_sync(self, grape: GrapeClient) -> int:
        """Pull from every peer that is up; returns how many events that added."""
        assert self.mesh is not None
        before = self.ledger.event_count
        found = await self._discover(grape)
        # Peers that answer Hello quickly are enough to start from; a black-holed
        # address must not hold up the start (it is probed on in the background,
        # and a peer that comes up later triggers a pull of its own).
        with trio.move_on_after(INITIAL_PROBE_WAIT):
            await self.mesh.wait_probed(found)
        progress = SyncProgress(expected_events(
            self.ledger.heads(), [link.heads for link in self.mesh.up_links()]))
        self._sync_progress = progress
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(progress.report, self.reports, self.config.progress_interval)
                # peer_up also starts pulls, which may win the race for the same events;
                # counting the ledger, not the pulls, reports what sync really brought.
                await pull_from_all(self, self.mesh)
                nursery.cancel_scope.cancel()
        finally:
            self._sync_progress = None
        return self.ledger.event_count - before

    async def _discover(self, grape: GrapeClient) -> list[PeerLink]:
        """Look peers up in Grape and start probing the new ones; returns those."""
        assert self.mesh is not None
        try:
            addresses = await grape.lookup(self.config.service)
        except GrapeClientError as exc:
            log.debug("lookup failed: %s", exc)
            return []
        return self.mesh.add_addresses(addresses)

    async def _discovery_loop(self, grape: GrapeClient) -> None:
        while True:
            await trio.sleep(self.config.lookup_interval * _jitter())
            await self._discover(grape)

    async def _goodbye(self) -> None:
        assert self.identity is not None and self.mesh is not None
        goodbye = bytes(Goodbye(node_id=self.identity.node_id, time_ms=_now_ms()))
        request = LeaveRequest(goodbye=goodbye, signature=self.identity.sign(goodbye))
        try:
            with trio.move_on_after(2.0):
                await self.mesh.say_goodbye(request)
        finally:
            self.mesh.close_channels()

    # ================================================================== events

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
                self.mesh.broadcast([e.signed for e in result.applied])
            for note in result.notifications:
                self._notify(note)

    # ================================================================== timed auctions

    async def close_overdue(self) -> int:
        """Close every auction of ours whose end has passed; returns how many.

        Called before the node serves anything, so a seller that was offline at an end
        closes first thing on its return; a bid that reaches it later is too late.
        """
        assert self.identity is not None
        own = self.identity.node_id
        now = self.wall_clock_ms()
        closed = 0
        for auction in self.ledger.timed_open_auctions():
            if auction.seller == own and auction.has_ended(now):
                try:
                    await self._close_ended(auction)
                except StorageUnavailable as exc:
                    # Start anyway: bids are refused by the end's stamp, and the
                    # deadline loop closes it once the log can be written again.
                    log.warning("%s: cannot close %s yet: %s", self.config.name,
                                auction.label, exc.reason)
                    return closed
                log.info("%s: closed %s, which ended while this node was offline",
                         self.config.name, auction.label)
                closed += 1
        return closed

    async def deadline_loop(self) -> None:
        """Close our auctions at their ends; say when other sellers' auctions end.

        Sleeps until the soonest current end among open timed auctions, or until
        events are applied (a bid may move an end, an Open may add one).
        """
        while True:
            changed = self._deadlines_changed = trio.Event()
            try:
                due_in_ms = await self._handle_due()
            except StorageUnavailable as exc:  # the outage is logged where it starts
                log.debug("%s: automatic close waits for the log: %s", self.config.name,
                          exc.reason)
                # A plain sleep: the failed write itself set `changed`.
                await trio.sleep(CLOSE_RETRY_DELAY)
                continue
            except Exception:  # a bug: say so, keep the node, try again later
                log.exception("%s: automatic close failed; retrying in %.0f s",
                              self.config.name, CLOSE_RETRY_DELAY)
                await trio.sleep(CLOSE_RETRY_DELAY)
                continue
            if due_in_ms is None:
                await changed.wait()
            else:
                with trio.move_on_after(due_in_ms / 1000):
                    await changed.wait()

    async def _handle_due(self) -> int | None:
        """Act on every auction past its end; ms until the next end (None: no end)."""
        assert self.identity is not None
        own = self.identity.node_id
        open_timed = self.ledger.timed_open_auctions()
        # Closed ones need no memory any more: keeps the set as small as what is open.
        self._ended_announced.intersection_update(a.key for a in open_timed)
        for auction in open_timed:
            now = self.wall_clock_ms()
            if not auction.has_ended(now):
                return auction.ends_ms - now
            if auction.seller == own:
                await self._close_ended(auction)
            elif auction.key not in self._ended_announced:
                self._ended_announced.add(auction.key)
                message = ended_message(auction, now)
                if self._ready:
                    self.reports.notification(message)
                self._send_watchers(message)
        return None

    async def _close_ended(self, auction: Auction) -> None:
        assert self.identity is not None
        if self.ledger.check_close(auction.key, self.identity.node_id) is not None:
            return  # closed meanwhile (by hand, while we awaited)
        close = self._close_body(auction)
        if isinstance(close, Rejection):
            log.error("%s: cannot close %s: %s", self.config.name, auction.label, close)
            return
        await self._author(close=close)

    def _close_body(self, auction: Auction) -> Close | Rejection:
        """Our Close of ``auction``, revealing its sealed reserve if it has one."""
        assert self.identity is not None
        terms = auction.terms
        if not terms.sealed_reserve:
            return Close(auction=auction.key.message())
        reveal = open_box(self.identity, Sealed(terms.sealed_reserve, terms.sealed_box))
        if reveal is None:  # only if the Open was not sealed with this node's key
            return Rejection(RejectCode.BAD_TERMS,
                             f"this node cannot reveal the sealed reserve of {auction.label}")
        return Close(auction=auction.key.message(), reserve=reveal.reserve,
                     reserve_key=reveal.key)

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

    # ================================================================== mesh hooks

    def peer_up(self, link: PeerLink) -> None:
        self.reports.peer(True, link.name, link.node_id, link.address)
        self._send_watchers(Notification(kind=NotificationKind.PEER_UP, peer=link.node_id,
                                         peer_name=link.name,
                                         text=f"peer up: {link.name}"))
        # A peer that (re)appears may hold what we missed, and vice versa. Before
        # ready, the initial sync is already pulling from every peer that is up.
        if self._ready and self._nursery is not None and self.mesh is not None:
            mesh = self.mesh
            self._nursery.start_soon(self._pull_gate.pull_once, link,
                                     lambda: pull(self, mesh, link))

    def peer_down(self, link: PeerLink, reason: str) -> None:
        self.reports.peer(False, link.name, link.node_id, link.address, reason)
        self._send_watchers(Notification(kind=NotificationKind.PEER_DOWN, peer=link.node_id,
                                         peer_name=link.name,
                                         text=f"peer down: {link.name} ({reason})"))

    # ================================================================== Peer service

    async def on_hello(self, request: HelloRequest, reached_at: object) -> HelloReply:
        """Answer a Hello with a proof of our key over the caller's challenge.

        ``reached_at`` is the local socket address the caller's connection reached;
        we sign only that address (``peer.core.handshake``). A Hello without a challenge
        (an older caller) gets a reply that proves nothing.
        """
        identity = self.identity
        assert identity is not None
        reply = HelloReply(node_id=identity.node_id, name=self.config.name,
                           heads=self.heads())
        if not request.challenge:
            return reply
        if not same_endpoint(request.address, reached_at):
            raise BadInput(f"this node was reached at {_endpoint_text(reached_at)}, not at"
                           f" {request.address[:100]!r}: it proves its id only for the"
                           " address it was reached at")
        try:
            reply.challenge, reply.proof = self._challenges.issue(
                identity, request.node_id, request.challenge, request.address,
                trio.current_time())
        except HandshakeError as exc:
            raise BadInput(str(exc)) from None
        return reply

    async def on_prove(self, request: ProveRequest, remote: object) -> ProveReply:
        """The caller's half of the handshake: it proves the id it gave in its Hello."""
        assert self.identity is not None
        try:
            pending = self._challenges.take(request.challenge, trio.current_time())
            verify_caller(pending, self.identity.node_id, request.node_id, request.proof)
        except HandshakeError as exc:
            where = _endpoint_text(remote)
            host = str(remote[0]) if isinstance(remote, tuple) and remote else where
            self._unproven_callers.warn(host, "a peer at %s did not prove its id: %s",
                                        where, exc)
            raise BadInput(str(exc)) from None
        log.debug("peer %s proved its id from %s", request.node_id.hex()[:8],
                  _endpoint_text(remote))
        # A peer that proved its id to us is alive: if it is down here (a restart at the
        # same address, with a backoff running), probe it now. Only a proven id does
        # this, so a Hello that lies costs us nothing more.
        if self.mesh is not None and request.node_id != self.identity.node_id:
            self.mesh.reprobe_soon(request.node_id)
        return ProveReply()

    async def on_place_bid(self, bid: SignedBid) -> PlaceBidReply:
        assert self.identity is not None
        # The Accept carries exactly the stamp the rules were checked at, so a bid
        # accepted just before the end is never stamped at or after it.
        stamp = self._stamp()
        rejection = self.ledger.check_bid(bid, self.identity.node_id, stamp)
        if rejection is not None and len(self._in_flight):
            # The refusal may rest on an event whose commit can still fail (a higher
            # bid, a close): answer only from what is on disk.
            await self._settle_in_flight()
            stamp = self._stamp()
            rejection = self.ledger.check_bid(bid, self.identity.node_id, stamp)
        if rejection is None:
            try:
                signed = (await self._author(accept=Accept(bid=bid), time_ms=stamp)).signed
            except StorageUnavailable as exc:
                # The bidder learns the seller's disk is the problem, not the network;
                # the seller's paths stay out of it.
                rejection = Rejection(RejectCode.STORAGE_UNAVAILABLE,
                                      f"the seller cannot store bids now: {exc.reason}")
            else:
                return PlaceBidReply(accepted=signed)
        # Signed: the bidder shows it only if our key vouches for it, and can show it
        # to anyone (peer/core/bid_replies.py).
        return signed_rejection(self.identity, bid, RejectionMsg(code=rejection.code,
                                                                 reason=rejection.reason))

    async def on_push(self, request: PushRequest) -> PushReply:
        source = self.mesh.link_for(request.sender) if self.mesh else None
        await self.ingest(list(request.events), source)
        return PushReply()

    async def on_sync_page(self, request: SyncRequest, cursor: SyncCursor | None
                           ) -> tuple[SyncReply, SyncCursor | None]:
        """One page of a Sync stream, and where the next page starts (None when done)."""
        assert self.store is not None
        theirs = {h.author: h.seq for h in request.heads}
        todo = sorted(a for a, s in self._durable_heads().items() if s > theirs.get(a, 0))
        author_index, after = cursor if cursor is not None else (0, 0)
        events: list[SignedEvent] = []
        while author_index < len(todo) and len(events) < PAGE_SIZE:
            author = todo[author_index]
            want = PAGE_SIZE - len(events)
            rows = await self.store.range_raw_async(author, max(after, theirs.get(author, 0)),
                                                    want)
            events += [SignedEvent(event=data, signature=signature)
                       for _, data, signature in rows]
            if len(rows) < want:
                author_index, after = author_index + 1, 0
            else:
                after = rows[-1][0]
        done = author_index >= len(todo)
        return SyncReply(events=events), None if done else (author_index, after)

    async def on_leave(self, request: LeaveRequest) -> bool:
        try:
            goodbye = Goodbye.parse(request.goodbye)
        except Exception:
            return False
        if not verify(goodbye.node_id, request.goodbye, request.signature):
            return False
        if self.mesh is not None:
            self.mesh.mark_left(goodbye.node_id, goodbye.time_ms)
        return True

    # ================================================================== Control service

    async def control_open(self, request: OpenRequest) -> ControlReply:
        currency = request.currency.strip() or "USDt"
        item = request.item.strip()
        stamp = self._stamp()
        ends_at = request.ends_at_ms or (stamp + request.ends_in_ms if request.ends_in_ms
                                         else 0)
        opening = Open(item=item, start_amount=request.start_amount, currency=currency,
                       ends_at_ms=ends_at, extend_ms=request.extend_ms,
                       min_increment=request.min_increment.strip(),
                       reserve=request.reserve.strip())
        sealed_text = request.sealed_reserve.strip()
        if sealed_text:
            sealed_amount = parse_amount(sealed_text)
            if isinstance(sealed_amount, Rejection):
                return _rejected(Rejection(RejectCode.BAD_TERMS,
                                           f"sealed reserve: {sealed_amount.reason}"))
            assert self.identity is not None
            sealed = seal(self.identity, format_amount(sealed_amount))
            opening.sealed_reserve, opening.sealed_reserve_box = sealed.commitment, sealed.box
        rejection = self.ledger.check_open(
            item, opening.start_amount, currency, time_ms=stamp, ends_at_ms=opening.ends_at_ms,
            extend_ms=opening.extend_ms, min_increment=opening.min_increment,
            reserve=opening.reserve, sealed_reserve=opening.sealed_reserve,
            sealed_box=opening.sealed_reserve_box)
        if rejection is not None:
            return _rejected(rejection)
        try:
            opened = await self._author(open=opening, time_ms=stamp)
        except StorageUnavailable as exc:
            return _rejected(Rejection(RejectCode.STORAGE_UNAVAILABLE, str(exc)))
        return self._view_reply(AuctionKey(opened.author, opened.seq))

    async def control_bid(self, request: BidRequest) -> ControlReply:
        assert self.identity is not None and self.mesh is not None
        key = self.ledger.resolve(request.auction)
        if isinstance(key, Rejection):
            return _rejected(key)
        auction = self.ledger.auction(key)
        assert auction is not None
        self._nonce += 1
        bid = make_signed_bid(self.identity, key, request.amount, auction.currency,
                              self._nonce, self.wall_clock_ms())
        if key.author == self.identity.node_id:
            # Our own auction: the ledger's SELF_BID (or other) rule answers.
            rejection = self.ledger.check_bid(bid, self.identity.node_id, self._stamp())
            assert rejection is not None
            return _rejected(rejection)
        reply = await self.mesh.place_bid(key.author, bid)
        if reply is None:
            return _rejected(Rejection(RejectCode.SELLER_UNREACHABLE,
                                       f"the seller {auction.seller_name} is not reachable"))
        if reply.rejected is not None:
            return ControlReply(rejected=reply.rejected)
        if reply.accepted is not None:
            # Apply the seller's Accept now, so `show` right after `bid` shows it.
            try:
                await self.ingest([reply.accepted], self.mesh.link_for(key.author))
            except StorageUnavailable as exc:
                return _rejected(Rejection(
                    RejectCode.STORAGE_UNAVAILABLE,
                    f"the seller accepted the bid, but {exc}; `show` on another node"
                    f" shows it"))
            return self._bid_reply(key, reply.accepted, request.amount, auction.currency)
        return self._view_reply(key)

    async def control_close(self, request: CloseRequest) -> ControlReply:
        assert self.identity is not None
        key = self.ledger.resolve(request.auction)
        if isinstance(key, Rejection):
            return _rejected(key)
        rejection = self.ledger.check_close(key, self.identity.node_id)
        if rejection is not None:
            return _rejected(rejection)
        auction = self.ledger.auction(key)
        assert auction is not None
        close = self._close_body(auction)
        if isinstance(close, Rejection):
            return _rejected(close)
        try:
            await self._author(close=close)
        except StorageUnavailable as exc:
            return _rejected(Rejection(RejectCode.STORAGE_UNAVAILABLE, str(exc)))
        return self._view_reply(key)

    async def control_list(self, request: ListRequest) -> ListReply:
        now = self.wall_clock_ms()
        auctions = self._in_flight.durable_auctions(self.ledger.auctions(request.all))
        return ListReply(auctions=[summary_view(a, now) for a in auctions])

    async def control_show(self, request: ShowRequest) -> ControlReply:
        key = self.ledger.resolve(request.auction)
        if isinstance(key, Rejection):
            return _rejected(key)
        return self._view_reply(key, lambda count: bid_page(
            count, request.limit, request.offset, request.oldest_first))

    async def control_status(self) -> StatusReply:
        assert self.identity is not None and self.mesh is not None
        views, unanswered = self.mesh.peer_views()
        peers = [PeerStatus(node_id=v.node_id, name=v.name, address=v.address,
                            up=v.state == "up", detail=v.detail, state=v.state,
                            since_ms=int(v.since * 1000))
                 for v in views]
        return StatusReply(
            node_id=self.identity.node_id, name=self.config.name,
            address=f"{self.config.host}:{self.port}", peers=peers, heads=self.heads(),
            forks=[ForkMsg(author=a, seq=s) for a, s in self.ledger.forks()],
            events=self.ledger.event_count - len(self._in_flight),
            unanswered_addresses=unanswered,
            dial_address=self.self_check.address, self_check=self.self_check.state,
            self_check_detail=self.self_check.detail,
        )

    def control_subscribe(self) -> trio.MemoryReceiveChannel[Notification]:
        send, receive = trio.open_memory_channel[Notification](WATCH_BUFFER)
        self._watchers.append(send)
        return receive

    def _view_reply(self, key: AuctionKey,
                    page: Callable[[int], range] | None = None) -> ControlReply:
        """The auction as it is on disk, with the bids ``page`` picks from its bid count
        (None: only the best one, so the reply's size never grows with the bids)."""
        auction = self.ledger.auction(key)
        durable = self._in_flight.durable_auctions([auction]) if auction is not None else []
        if not durable:
            return _rejected(Rejection(RejectCode.AUCTION_NOT_FOUND, key.text))
        now = self.wall_clock_ms()
        if page is None:
            return ControlReply(auction=summary_view(durable[0], now))
        return ControlReply(auction=auction_view(durable[0], now,
                                                 bids=page(len(durable[0].bids))))

    def _bid_reply(self, key: AuctionKey, accept: SignedEvent, amount: str,
                   currency: str) -> ControlReply:
        """A Bid's reply: the bid the seller accepted and the auction's summary."""
        assert self.identity is not None
        reply = self._view_reply(key)
        decoded = decode_signed(accept)
        parsed = parse_amount(amount)
        if isinstance(decoded, DecodedEvent) and not isinstance(parsed, Rejection):
            # The seller's check_bid_reply proved the Accept holds our bid as sent.
            reply.accepted_bid = BidView(bidder=self.identity.node_id,
                                         bidder_name=self.identity.name,
                                         amount=format_amount(parsed), currency=currency,
                                         time_ms=decoded.fields.time_ms)
        return reply


def _endpoint_text(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return "an unknown address"
