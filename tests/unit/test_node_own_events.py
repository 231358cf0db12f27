"""The node pushes its own events in seq order, however its group commits resume."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

import trio
import trio.testing

from peer.core.identity import Identity
from peer.core.rules import Rejection
from peer.core.signed_events import decode_signed, make_signed_bid
from peer.gen.auction.v1 import OpenRequest, PlaceBidReply, RejectCode, SignedEvent
from peer.node import Node
from peer.storage.rows import StoredEvent
from peer.storage.store_errors import StoreUnavailable
from tests.support import in_process_node


class _StoreFinishingOnCue:
    """Each append waits until the test lets it finish; appends are recorded.

    Like EventStore, it fails every append from the failing one on until resume().
    """

    def __init__(self) -> None:
        self.waiting: list[tuple[list[StoredEvent], trio.Event]] = []
        self.changed = trio.Event()
        self.fail_seq = 0  # appends holding this seq or a later one fail once let go
        self.failure: StoreUnavailable | None = None
        self.resumed = 0

    async def append(self, events: list[StoredEvent]) -> None:
        done = trio.Event()
        self.waiting.append((events, done))
        self.changed.set()
        await done.wait()
        if self.fail_seq and events[0].seq >= self.fail_seq:
            self.failure = StoreUnavailable("events.sqlite3: disk full", "disk full")
            raise self.failure

    def resume(self) -> None:
        self.failure = None
        self.resumed += 1


class _RecordingMesh:
    def __init__(self) -> None:
        self.pushed: list[int] = []

    def broadcast(self, events: list[SignedEvent], skip: bytes = b"") -> None:
        for signed in events:
            decoded = decode_signed(signed)
            assert not isinstance(decoded, Rejection), decoded
            self.pushed.append(decoded.fields.seq)


def _node(tmp_path: Path) -> tuple[Node, _StoreFinishingOnCue, _RecordingMesh, io.StringIO]:
    out, store, mesh = io.StringIO(), _StoreFinishingOnCue(), _RecordingMesh()
    node = in_process_node(tmp_path, Identity.generate("Seller"), store, mesh, out=out)
    return node, store, mesh, out


async def _open_three_finishing_in_reverse(node: Node, store: _StoreFinishingOnCue,
                                           refused: list[str]) -> None:
    async def open_one(item: str) -> None:
        reply = await node.control_open(OpenRequest(item=item, start_amount="1",
                                                    currency="USDt"))
        if reply.rejected is not None:
            assert reply.rejected.code == RejectCode.STORAGE_UNAVAILABLE
            refused.append(reply.rejected.reason)

    async with trio.open_nursery() as nursery:
        for item in ("Lot#1", "Lot#2", "Lot#3"):
            nursery.start_soon(open_one, item)
        with trio.fail_after(5):
            while len(store.waiting) < 3:
                store.changed = trio.Event()
                await store.changed.wait()
        for _, done in reversed(store.waiting):
            done.set()
            await trio.testing.wait_all_tasks_blocked()


async def test_own_events_are_pushed_and_printed_in_seq_order(tmp_path: Path) -> None:
    node, store, mesh, out = _node(tmp_path)
    refused: list[str] = []
    await _open_three_finishing_in_reverse(node, store, refused)
    assert refused == []
    assert [events[0].seq for events, _ in store.waiting] == [1, 2, 3]
    assert mesh.pushed == [1, 2, 3]
    ids = [json.loads(line)["auction"]["id"] for line in out.getvalue().splitlines()]
    assert [int(i.rpartition(":")[2]) for i in ids] == [1, 2, 3]


async def test_a_failed_commit_takes_back_its_event_and_every_later_one(
        tmp_path: Path) -> None:
    node, store, mesh, out = _node(tmp_path)
    assert node.identity is not None
    me = node.identity.node_id
    store.fail_seq = 2
    refused: list[str] = []
    await _open_three_finishing_in_reverse(node, store, refused)
    assert len(refused) == 2 and all("disk full" in r for r in refused)
    # Only seq 1 was stored: memory holds it alone, and nobody heard of 2 or 3.
    assert mesh.pushed == [1]
    assert node.ledger.heads() == {me: 1} and node.ledger.event_count == 1
    assert [a.key.seq for a in node.ledger.auctions()] == [1]
    assert len(out.getvalue().splitlines()) == 1
    assert store.resumed == 1
    # The next write tries the disk again and gets the next seq: no seq is re-used
    # for something else on disk, none is skipped.
    store.fail_seq = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node.control_open, OpenRequest(item="Lot#4", start_amount="1",
                                                          currency="USDt"))
        with trio.fail_after(5):
            while len(store.waiting) < 4:
                store.changed = trio.Event()
                await store.changed.wait()
        assert store.waiting[3][0][0].seq == 2
        store.waiting[3][1].set()
    assert mesh.pushed == [1, 2]


async def test_a_bid_is_not_refused_for_a_higher_bid_whose_commit_then_fails(
        tmp_path: Path) -> None:
    node, store, mesh, _ = _node(tmp_path)
    assert node.identity is not None
    bidder = Identity.generate("Bidder")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node.control_open, OpenRequest(item="Lot", start_amount="1",
                                                          currency="USDt"))
        await trio.testing.wait_all_tasks_blocked()
        store.waiting[0][1].set()
    key = node.ledger.auctions()[0].key
    replies: dict[str, PlaceBidReply] = {}

    async def place(amount: str, nonce: int) -> None:
        replies[amount] = await node.on_place_bid(
            make_signed_bid(bidder, key, amount, "USDt", nonce, 0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(place, "10", 1)
        await trio.testing.wait_all_tasks_blocked()  # 10 is applied, its commit held
        nursery.start_soon(place, "5", 2)
        await trio.testing.wait_all_tasks_blocked()
        assert "5" not in replies  # not refused for a bid that is not on disk yet
        store.fail_seq = 2
        store.waiting[1][1].set()  # the commit of 10 fails
        await trio.testing.wait_all_tasks_blocked()
        store.fail_seq = 0
        assert len(store.waiting) == 3  # 5 is checked again, accepted, committed
        store.waiting[2][1].set()
    rejected = replies["10"].rejected
    assert rejected is not None and rejected.code == RejectCode.STORAGE_UNAVAILABLE
    assert replies["5"].accepted is not None
    assert [b.amount for b in node.ledger.auctions()[0].bids] == [Decimal("5")]
    assert mesh.pushed == [1, 2]  # seq 2 went to the bid of 5: the one of 10 left no trace
