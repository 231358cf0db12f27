"""The node and timed auctions, on trio's MockClock: the seller closes at the end (moved by
a late bid), other nodes say the auction ended and await the Close, and a seller that was
offline at the end closes first thing on its return."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.ledger import Ledger
from peer.core.signed_events import make_signed_bid
from peer.gen.auction.v1 import (
    AuctionState,
    CloseReason,
    CloseRequest,
    NotificationKind,
    OpenRequest,
    RejectCode,
    ShowRequest,
    SignedEvent,
)
from peer.node import Node
from peer.storage.rows import StoredEvent
from tests.support import in_process_node
from tests.unit.timed_support import T0, ClockedAuthor

SELLER = Identity.from_seed(b"\x01" * 32, "Client#1")
BIDDER = Identity.from_seed(b"\x02" * 32, "Client#2")
WATCHER = Identity.from_seed(b"\x03" * 32, "Client#3")


class _MemoryStore:
    """Appends to a list; ``broken`` makes them fail as a full disk would."""

    def __init__(self) -> None:
        self.rows: list[StoredEvent] = []
        self.broken = False
        self.failure = None  # the real store's refusal while an undo is pending: none here

    async def append(self, events: list[StoredEvent]) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        self.rows.extend(events)

    def resume(self) -> None:
        pass


class _RecordingMesh:
    def __init__(self) -> None:
        self.pushed: list[SignedEvent] = []

    def broadcast(self, events: list[SignedEvent], skip: bytes = b"") -> None:
        self.pushed.extend(events)


def _wall_ms() -> int:
    # Wall time that follows the MockClock: the node's ends and stamps are in it.
    return T0 + round(trio.current_time() * 1000)


def _node(tmp_path: Path, identity: Identity) -> tuple[Node, _MemoryStore, io.StringIO]:
    out, store = io.StringIO(), _MemoryStore()
    node = in_process_node(tmp_path, identity, store, _RecordingMesh(), out=out,
                           wall_clock_ms=_wall_ms)
    return node, store, out


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def _open(node: Node, item: str = "Pic#3", **terms: Any) -> AuctionKey:
    reply = await node.control_open(OpenRequest(item=item, start_amount="50",
                                                currency="USDt", **terms))
    assert reply.auction is not None, reply.rejected
    author, seq = reply.auction.id.split(":")
    return AuctionKey(bytes.fromhex(author), int(seq))


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def test_the_seller_closes_at_the_end_a_late_bid_moved(tmp_path: Path,
                                                       clock: trio.testing.MockClock) -> None:
    async def main() -> None:
        node, store, out = _node(tmp_path, SELLER)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.deadline_loop)
            key = await _open(node, ends_in_ms=3_000, extend_ms=2_000, min_increment="1")
            await trio.sleep(2.5)  # 0.5 s left: inside the 2 s window
            bid = make_signed_bid(BIDDER, key, "50", "USDt", 1, _wall_ms())
            reply = await node.on_place_bid(bid)
            assert reply.accepted is not None, reply.rejected
            await trio.sleep(1.0)  # 3.5 s: past the announced end, before the moved one
            auction = node.ledger.auction(key)
            assert auction is not None and not auction.closed
            assert auction.ends_ms == T0 + 4_500
            await trio.sleep(1.5)
            assert auction.closed and auction.ended_by_time
            assert T0 + 4_500 <= (auction.closed_ms or 0) < T0 + 4_600
            assert len(store.rows) == 3  # Open, Accept, Close: all made durable
            late = await node.on_place_bid(make_signed_bid(BIDDER, key, "60", "USDt", 2,
                                                           _wall_ms()))
            assert late.rejected is not None
            assert late.rejected.code == RejectCode.AUCTION_CLOSED
            nursery.cancel_scope.cancel()
        texts = [line["text"] for line in _lines(out)]
        assert any("end extended by 1.5s" in text for text in texts), texts
        closed = _lines(out)[-1]
        assert closed["event"] == "closed"
        assert closed["text"] == "Client#1->Pic#3 ended: Client#2 -> 50 USDt"
        assert closed["closed_by"] == "ended" and closed["winner"] == "Client#2"

    trio.run(main, clock=clock)


def test_many_auctions_close_each_at_its_end_while_bids_move_ends_and_hands_close(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    """The deadline loop finds the next end among many, whatever moved since."""
    async def main() -> None:
        node, _, out = _node(tmp_path, SELLER)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.deadline_loop)
            # 40 auctions ending between 2 s and 3 s; every other one has a 500 ms
            # anti-sniping window, every fourth is closed by hand before its end.
            keys = [await _open(node, f"Lot#{i}", ends_in_ms=2_000 + (i * 397) % 1_000,
                                extend_ms=500 if i % 2 == 0 else 0) for i in range(40)]
            by_hand = set(keys[1::4])
            bids = dict.fromkeys(keys, 0)
            for _ in range(120):  # 6 s of mock time in steps of 50 ms
                await trio.sleep(0.05)
                now = _wall_ms()
                for key in keys:
                    auction = node.ledger.auction(key)
                    assert auction is not None
                    if key in by_hand and now >= T0 + 1_000 and not auction.closed:
                        reply = await node.control_close(CloseRequest(auction=key.text))
                        assert reply.rejected is None, reply.rejected
                    elif auction.terms.extend_ms and bids[key] < 3 and not auction.closed \
                            and 0 < auction.ends_ms - now <= 200:
                        bids[key] += 1  # a late bid: its end moves to now + 500 ms
                        reply = await node.on_place_bid(make_signed_bid(
                            BIDDER, key, str(50 + bids[key]), "USDt", bids[key], now))
                        assert reply.accepted is not None, reply.rejected
                        assert auction.ends_ms == now + 500
                    # Open until its current end, closed (by the loop) just after it.
                    if key not in by_hand:
                        assert auction.closed == (now >= auction.ends_ms + 60) or \
                            (auction.closed and now >= auction.ends_ms), (key, now)
            assert sum(bids.values()) == 60  # each of the 20 ends moved three times
            for key in keys:
                auction = node.ledger.auction(key)
                assert auction is not None and auction.closed
                assert auction.ended_by_time == (key not in by_hand)
                if key not in by_hand:
                    assert auction.ends_ms <= (auction.closed_ms or 0) < auction.ends_ms + 60
            assert not node.ledger.has_timed_open
            nursery.cancel_scope.cancel()
        # The loop closed them in the order of their final ends.
        closed = [line["auction"]["id"] for line in _lines(out)
                  if line["event"] == "closed" and line["closed_by"] == "ended"]
        ends = {key.text: node.ledger.auction(key).ends_ms  # type: ignore[union-attr]
                for key in keys}
        seqs = {key.text: key.seq for key in keys}
        assert len(closed) == 30 and closed == sorted(closed, key=lambda k: (ends[k], seqs[k]))

    trio.run(main, clock=clock)


def test_the_seller_refuses_a_bid_at_the_end_even_before_its_close(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    async def main() -> None:
        node, _, _ = _node(tmp_path, SELLER)  # no deadline loop: nothing closes it
        key = await _open(node, ends_in_ms=3_000)
        await trio.sleep(3.0)
        reply = await node.on_place_bid(make_signed_bid(BIDDER, key, "60", "USDt", 1,
                                                        _wall_ms()))
        assert reply.rejected is not None
        assert reply.rejected.code == RejectCode.AUCTION_ENDED

    trio.run(main, clock=clock)


def test_other_nodes_say_ended_awaiting_close_with_the_winner(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    async def main() -> None:
        seller = ClockedAuthor(SELLER)
        key = seller.open("Pic#3", "50", ends_in=3_000, reserve="55")
        seller.now = T0 + 1_000
        seller.try_bid(BIDDER, key, "60")
        node, _, out = _node(tmp_path, WATCHER)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.deadline_loop)
            with node.control_subscribe() as watch:
                assert await node.ingest(list(seller.log), None) == 2
                shown = await node.control_show(ShowRequest(auction=key.text))
                assert shown.auction is not None
                assert shown.auction.state == AuctionState.OPEN
                await trio.sleep(3.1)  # the end was at 3.0 (mock time): past it
                shown = await node.control_show(ShowRequest(auction=key.text))
                assert shown.auction is not None
                assert shown.auction.state == AuctionState.ENDED
                assert shown.auction.reserve_met
                notes = [watch.receive_nowait() for _ in range(3)]
                assert [n.kind for n in notes] == [NotificationKind.OPENED,
                                                   NotificationKind.BID,
                                                   NotificationKind.ENDED]
                ended = notes[-1]
                assert ended.text == ("Client#1->Pic#3 ended; awaiting Client#1's close,"
                                      " which will say: Client#2 -> 60 USDt")
                assert ended.bid is not None and ended.bid.amount == "60"
                await trio.sleep(10.0)  # said once, however long the seller takes
                with pytest.raises(trio.WouldBlock):
                    watch.receive_nowait()
                seller.now = T0 + 13_000
                seller.close(key)
                await node.ingest(seller.log[-1:], None)
                closed = watch.receive_nowait()
                assert closed.kind == NotificationKind.CLOSED
                assert closed.auction is not None
                assert closed.auction.close_reason == CloseReason.ENDED
                assert closed.text == "Client#1->Pic#3 ended: Client#2 -> 60 USDt"
            await trio.testing.wait_all_tasks_blocked()
            assert node._ended_announced == set()
            nursery.cancel_scope.cancel()
        ended_line = next(line for line in _lines(out) if line["event"] == "ended")
        assert ended_line["winner"] == "Client#2" and ended_line["amount"] == "60"

    trio.run(main, clock=clock)


def test_an_offline_seller_closes_first_thing_on_its_return(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    async def main() -> None:
        # What the seller logged before it went offline, rebuilt from its store.
        before = ClockedAuthor(SELLER)
        key = before.open("Pic#3", "50", ends_in=3_000, reserve="100")
        before.now = T0 + 2_000
        before.try_bid(BIDDER, key, "70")
        other = before.open("Pic#4", "5", ends_in=60_000)
        await trio.sleep(20.0)  # back 20 s later: Pic#3 ended meanwhile, Pic#4 did not
        node, store, _ = _node(tmp_path, SELLER)
        node._ready = False  # as in Node.run: nothing is served yet
        for signed in before.log:
            assert node.ledger.apply(signed, verified=True).rejection is None
        assert await node.close_overdue() == 1
        auction = node.ledger.auction(key)
        assert auction is not None and auction.closed and auction.ended_by_time
        assert auction.winner is None and not auction.reserve_met
        assert auction.closed_ms == T0 + 20_000
        assert [row.seq for row in store.rows] == [4]
        reopened = node.ledger.auction(other)
        assert reopened is not None and not reopened.closed
        assert await node.close_overdue() == 0

    trio.run(main, clock=clock)


def test_the_sellers_automatic_close_reveals_its_sealed_reserve(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    async def main() -> None:
        node, store, out = _node(tmp_path, SELLER)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.deadline_loop)
            key = await _open(node, ends_in_ms=2_000, sealed_reserve="70")
            reply = await node.on_place_bid(make_signed_bid(BIDDER, key, "65", "USDt", 1,
                                                            _wall_ms()))
            assert reply.accepted is not None, reply.rejected
            shown = await node.control_show(ShowRequest(auction=key.text))
            assert shown.auction is not None
            assert shown.auction.reserve_sealed and shown.auction.reserve == ""
            await trio.sleep(2.5)
            auction = node.ledger.auction(key)
            assert auction is not None and auction.closed
            assert auction.reserve == 70 and not auction.reserve_met
            nursery.cancel_scope.cancel()
        closed = _lines(out)[-1]
        assert closed["text"] == ("Client#1->Pic#3 ended: no sale (sealed reserve 70 USDt not"
                                  " met; best 65 USDt by Client#2)")
        assert closed["result"] == "no sale (reserve not met)"
        assert closed["auction"]["reserve"] == "70" and closed["auction"]["reserve_sealed"]
        # Another node checks the reveal as it applies the seller's log, and agrees.
        other = Ledger()
        for row in store.rows:
            assert other.apply(SignedEvent(event=row.data, signature=row.signature)
                               ).rejection is None
        revealed = other.auction(key)
        assert revealed is not None and revealed.closed and revealed.reserve == 70

    trio.run(main, clock=clock)


def test_a_seller_whose_disk_fails_at_its_return_starts_and_closes_once_it_can_write(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    async def main() -> None:
        before = ClockedAuthor(SELLER)
        key = before.open("Pic#3", "50", ends_in=3_000)
        await trio.sleep(10.0)
        node, store, _ = _node(tmp_path, SELLER)
        for signed in before.log:
            assert node.ledger.apply(signed, verified=True).rejection is None
        store.broken = True
        assert await node.close_overdue() == 0  # no crash: the node starts anyway
        auction = node.ledger.auction(key)
        assert auction is not None and not auction.closed  # the failed Close was undone
        refused = await node.on_place_bid(make_signed_bid(BIDDER, key, "60", "USDt", 1,
                                                          _wall_ms()))
        assert refused.rejected is not None
        assert refused.rejected.code == RejectCode.AUCTION_ENDED
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.deadline_loop)
            await trio.sleep(5.0)  # retried meanwhile, the disk still full
            assert not auction.closed and store.rows == []
            store.broken = False
            await trio.sleep(2.0)
            assert auction.closed and auction.ended_by_time
            assert [row.seq for row in store.rows] == [2]
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)
