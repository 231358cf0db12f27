"""Acknowledged means durable, and memory never runs ahead of the log (hypothesis).

Concurrent authors (opens, bids, closes) and pushes of another node's log run
against a node whose real event store is made slow, failing and cancelled at any
point: SQLite itself fails a transaction (a temporary trigger), holds the writer
thread inside it while trio goes on, or hands a result back late; callers are
cancelled by deadlines at every point. Virtual time (MockClock) drives it all.
Afterwards: no log on disk has a hole, the node's memory equals a rebuild from
disk, and everything the node acknowledged (a reply, a push answered) is on disk.
"""

from __future__ import annotations

import tempfile
import threading
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.ledger import Ledger
from peer.core.rules import Rejection, format_amount
from peer.core.signed_events import decode_signed, make_signed_bid
from peer.gen.auction.v1 import (
    CloseRequest,
    OpenRequest,
    PushRequest,
    RejectCode,
    SignedEvent,
)
from peer.net.rpc import StorageUnavailable
from peer.node import Node
from peer.storage.rows import StoredEvent
from peer.storage.store import EventStore
from peer.storage.store_errors import StoreUnavailable
from tests.support import in_process_node
from tests.unit.test_ledger import Author, bid, snapshot

SELLER = Identity.from_seed(b"\x51" * 32, "Seller")
BIDDERS = [Identity.from_seed(bytes([0x60 + i]) * 32, f"Bidder#{i}") for i in range(3)]
Slot = tuple[bytes, int]


def _remote_log() -> list[SignedEvent]:
    """Another node's log (an open and accepted bids, then a close), pushed to ours."""
    remote = Author(Identity.from_seed(b"\x52" * 32, "Remote"))
    key = remote.open("Vase", "10")
    for n, who in enumerate(BIDDERS * 2):
        remote.accept(bid(who, key, str(10 + n), n + 1))
    remote.close(key)
    return remote.log


REMOTE = _remote_log()


class FaultyDisk:
    """Faults inside SQLite's own transaction: a temporary trigger on the writer
    connection calls :meth:`_fault` for every row inserted, in the writer thread."""

    def __init__(self, store: EventStore) -> None:
        self.fail: set[Slot] = set()
        self.hold: dict[Slot, threading.Event] = {}
        writer = store._writer
        writer.create_function("injected_fault", 2, self._fault)
        writer.execute("CREATE TEMP TRIGGER injected BEFORE INSERT ON main.events"
                       " WHEN injected_fault(NEW.author, NEW.seq)"
                       " BEGIN SELECT RAISE(ABORT, 'disk I/O error (injected)'); END")

    def _fault(self, author: bytes, seq: int) -> int:
        slot = (author, seq)
        held = self.hold.get(slot)
        if held is not None:
            # The transaction is open and the writer thread busy while trio goes on:
            # other appends queue, deadlines pass, other commits come back.
            held.wait(10)
        if slot in self.fail:
            self.fail.discard(slot)  # once: a seq re-used after an undo may succeed
            return 1
        return 0


@dataclass(frozen=True)
class AppendPlan:
    """What happens to one append: failed by SQLite, held inside its transaction for
    ``hold`` virtual seconds, its result handed back ``late`` virtual seconds late."""

    fail: bool
    hold: float
    late: float


class FaultyStore:
    """The node's real EventStore, with each append's faults from a plan.

    Appends are forwarded at once, in call order, as the node relies on (it applies
    and appends with nothing awaited in between).
    """

    def __init__(self, real: EventStore, plans: list[AppendPlan],
                 nursery: trio.Nursery) -> None:
        self.real = real
        self.disk = FaultyDisk(real)
        self._plans = iter(plans)
        self._nursery = nursery

    @property
    def failure(self) -> StoreUnavailable | None:
        return self.real.failure

    def resume(self) -> None:
        self.real.resume()

    def no_more_faults(self) -> None:
        self._plans = iter(())

    async def append(self, events: list[StoredEvent]) -> None:
        plan = next(self._plans, AppendPlan(False, 0, 0))
        first, last = (events[0].author, events[0].seq), (events[-1].author, events[-1].seq)
        if plan.fail:
            self.disk.fail.add(last)
        if plan.hold:
            held = self.disk.hold[first] = threading.Event()

            async def release() -> None:
                await trio.sleep(plan.hold)
                held.set()

            self._nursery.start_soon(release)
        try:
            await self.real.append(events)
        finally:
            self.disk.fail.discard(last)
            self.disk.hold.pop(first, None)
        if plan.late:
            with trio.CancelScope(shield=True):  # the store never raises after a commit
                await trio.sleep(plan.late)


class RecordingMesh:
    def __init__(self) -> None:
        self.pushed: list[SignedEvent] = []

    def broadcast(self, events: list[SignedEvent], skip: bytes = b"") -> None:
        self.pushed.extend(events)

    def link_for(self, node_id: bytes) -> None:
        return None


@dataclass
class Acks:
    """What the node acknowledged, to be found on disk afterwards."""

    opened: set[AuctionKey]
    events: list[SignedEvent]  # bids accepted (the reply's event) and pushes answered
    closed: set[AuctionKey]


# An op: (kind, choice, start delay, deadline or None).
OPS = st.lists(
    st.tuples(st.sampled_from(["open", "bid", "bid", "bid", "close", "push", "push_gap"]),
              st.integers(0, 50), st.sampled_from([0, 0, 0.001, 0.01, 0.05, 0.2]),
              st.one_of(st.none(), st.sampled_from([0, 0.0005, 0.003, 0.02, 0.1]))),
    min_size=1, max_size=24)
PLANS = st.lists(st.builds(AppendPlan, fail=st.sampled_from([False, False, True]),
                           hold=st.sampled_from([0, 0, 0.002, 0.03]),
                           late=st.sampled_from([0, 0, 0.001, 0.02])),
                 max_size=24)


def _node(data_dir: Path, store: FaultyStore) -> tuple[Node, RecordingMesh]:
    mesh = RecordingMesh()
    return in_process_node(data_dir, SELLER, store, mesh), mesh


async def _run_op(node: Node, op: tuple[str, int, float, float | None], nonce: int,
                  acks: Acks) -> None:
    kind, choice, start, deadline = op
    await trio.sleep(start)
    mine = [a for a in node.ledger.auctions() if a.seller == SELLER.node_id]
    with trio.move_on_after(deadline if deadline is not None else float("inf")):
        if kind == "open":
            reply = await node.control_open(OpenRequest(item=f"Lot#{nonce}", start_amount="5",
                                                        currency="USDt"))
            if reply.auction is not None:
                author, _, seq = reply.auction.id.rpartition(":")
                acks.opened.add(AuctionKey(bytes.fromhex(author), int(seq)))
            else:
                assert reply.rejected is not None
                assert reply.rejected.code == RejectCode.STORAGE_UNAVAILABLE
        elif kind in ("bid", "close") and mine:
            auction = mine[choice % len(mine)]
            if kind == "close":
                reply = await node.control_close(CloseRequest(auction=auction.key.text))
                if reply.auction is not None:
                    acks.closed.add(auction.key)
                return
            best = auction.best.amount + 1 if auction.best else auction.start_amount
            bidder = BIDDERS[choice % len(BIDDERS)]
            signed_bid = make_signed_bid(bidder, auction.key, format_amount(Decimal(best)),
                                         "USDt", nonce, 0)
            placed = await node.on_place_bid(signed_bid)
            if placed.accepted is not None:
                acks.events.append(placed.accepted)
        elif kind == "push":
            # A prefix of the remote log (as a Sync page from seq 1 would be): all of
            # it is acknowledged when the push is answered.
            events = REMOTE[:1 + choice % len(REMOTE)]
            try:
                await node.on_push(PushRequest(events=events))
            except StorageUnavailable:
                return
            acks.events.extend(events)
        elif kind == "push_gap":
            # Events behind a gap: held, never acknowledged by this push.
            start_at = 1 + choice % (len(REMOTE) - 1)
            try:
                await node.on_push(PushRequest(events=REMOTE[start_at:start_at + 2]))
            except StorageUnavailable:
                return


def _rows(path: Path) -> list[StoredEvent]:
    with closing(EventStore.open(path)) as store:
        return list(store.load_all())


def _check(node: Node, mesh: RecordingMesh, rows: list[StoredEvent], acks: Acks) -> None:
    # 1. No hole: every author's log on disk is 1..n.
    seqs: dict[bytes, list[int]] = {}
    for row in rows:
        seqs.setdefault(row.author, []).append(row.seq)
    for author, found in seqs.items():
        assert sorted(found) == list(range(1, len(found) + 1)), (author.hex()[:8], found)
    # 2. Memory is exactly a rebuild from disk; nothing is left in flight.
    rebuilt = Ledger()
    for row in rows:
        result = rebuilt.apply(SignedEvent(event=row.data, signature=row.signature),
                               verified=True)
        assert result.rejection is None, result.rejection
    assert len(node._in_flight) == 0
    assert snapshot(node.ledger) == snapshot(rebuilt)
    assert {h.author: h.seq for h in node.heads()} == rebuilt.heads()
    # 3. Everything acknowledged, and everything pushed to peers, is on disk.
    on_disk = {(r.author, r.seq): r.data for r in rows}
    for signed in acks.events + mesh.pushed:
        decoded = decode_signed(signed)
        assert not isinstance(decoded, Rejection)
        slot = (decoded.fields.author, decoded.fields.seq)
        assert on_disk.get(slot) == signed.event, f"acknowledged {slot[1]} is not on disk"
    for key in acks.opened:
        assert rebuilt.auction(key) is not None
    for key in acks.closed:
        closed = rebuilt.auction(key)
        assert closed is not None and closed.closed


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(OPS, PLANS)
def test_acknowledged_means_durable_under_failed_slow_and_cancelled_commits(
        ops: list[tuple[str, int, float, float | None]], plans: list[AppendPlan]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        path = data_dir / "events.sqlite3"
        acks = Acks(set(), [], set())

        async def main() -> tuple[Node, RecordingMesh]:
            real = EventStore.open(path)
            with closing(real):
                async with trio.open_nursery() as faults:
                    store = FaultyStore(real, plans, faults)
                    node, mesh = _node(data_dir, store)
                    async with trio.open_nursery() as nursery:
                        for nonce, op in enumerate(ops, start=1):
                            nursery.start_soon(_run_op, node, op, nonce, acks)
                    # After the faults: the node takes writes again, without a restart.
                    assert real.failure is None
                    store.no_more_faults()
                    reply = await node.control_open(OpenRequest(item="After",
                                                                start_amount="1",
                                                                currency="USDt"))
                    assert reply.auction is not None, reply
                return node, mesh

        node, mesh = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        _check(node, mesh, _rows(path), acks)

