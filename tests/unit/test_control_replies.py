"""Control replies sized by what changed: a bid's reply, `show`'s pages, `list`'s summaries.

Two in-process nodes: the bidder's mesh hands its PlaceBid straight to the seller
node, so the whole Control -> bidder -> seller path runs, minus the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.cli.render import auction_json, auction_lines, best_bid, bid_count, bid_lines
from peer.core.identity import Identity
from peer.gen.auction.v1 import (
    AuctionView,
    BidRequest,
    ListRequest,
    OpenRequest,
    PlaceBidReply,
    ShowRequest,
    SignedBid,
    SignedEvent,
    SyncRequest,
)
from peer.net.views import DEFAULT_BID_PAGE, MAX_BID_PAGE, bid_page
from peer.node import Node
from peer.storage.store import EventStore
from tests.support import in_process_node

SELLER = Identity.from_seed(b"\x81" * 32, "Seller")
BIDDER = Identity.from_seed(b"\x82" * 32, "Bidder")


class _Direct:
    """A mesh that delivers PlaceBid straight to the seller node and pushes nowhere."""

    def __init__(self, seller: Node | None) -> None:
        self.seller = seller
        self.skipped: list[bytes] = []  # per broadcast, the node it was not sent to

    def broadcast(self, events: list[SignedEvent], skip: bytes = b"") -> None:
        self.skipped.append(skip)

    def link_for(self, node_id: bytes) -> None:
        return None

    async def place_bid(self, seller: bytes, bid: SignedBid) -> PlaceBidReply | None:
        assert self.seller is not None
        return await self.seller.on_place_bid(bid)


def _node(path: Path, identity: Identity, seller: Node | None) -> Node:
    path.mkdir()
    return in_process_node(path, identity, EventStore.open(path / "events.sqlite3"),
                           _Direct(seller))


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Node, Node, str]]:
    seller = _node(tmp_path / "seller", SELLER, None)
    bidder = _node(tmp_path / "bidder", BIDDER, seller)
    try:
        opened = await seller.control_open(OpenRequest(item="Pic#1", start_amount="10",
                                                       currency="USDt"))
        assert opened.auction is not None
        page, _ = await seller.on_sync_page(SyncRequest(), None)
        await bidder.ingest(list(page.events), None)
        yield seller, bidder, opened.auction.id
    finally:
        for node in (seller, bidder):
            assert node.store is not None
            node.store.close()


async def _bid(bidder: Node, auction: str, amount: int) -> None:
    reply = await bidder.control_bid(BidRequest(auction=auction, amount=str(amount)))
    assert reply.rejected is None, reply.rejected


async def test_a_bid_reply_carries_the_accepted_bid_and_a_summary_not_every_bid(
        pair: tuple[Node, Node, str]) -> None:
    _, bidder, auction = pair
    for amount in range(10, 40):
        await _bid(bidder, auction, amount)
    reply = await bidder.control_bid(BidRequest(auction=auction, amount="40.50"))
    assert reply.rejected is None and reply.auction is not None
    accepted = reply.accepted_bid
    assert accepted is not None
    assert (accepted.bidder, accepted.bidder_name, accepted.amount, accepted.currency) == (
        BIDDER.node_id, "Bidder", "40.5", "USDt")
    assert accepted.time_ms > 0
    view = reply.auction
    assert view.bid_count == 31 and len(view.bids) == 1 and view.first_bid_index == 30
    assert view.best == accepted and view.bids[0] == accepted
    assert bid_lines(accepted, view) == [
        f"accepted: Bidder 40.5 USDt on Seller->Pic#1  ({auction})", "  open, 31 bid(s)"]


async def test_the_bidder_applies_the_accept_without_checking_signatures_again(
        pair: tuple[Node, Node, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Its signatures were checked when the reply came in (check_bid_reply, in the
    # mesh) and when the bid was signed: the seller's check of the bid is the only one.
    import peer.core.identity
    import peer.core.ledger

    _, bidder, auction = pair
    checks: list[bytes] = []
    real = peer.core.identity.verify

    def counting(key: bytes, data: bytes, signature: bytes) -> bool:
        checks.append(key)
        return real(key, data, signature)

    monkeypatch.setattr(peer.core.ledger, "verify", counting)
    await _bid(bidder, auction, 20)
    assert checks == [BIDDER.node_id]  # the seller's check_bid
    shown = (await bidder.control_show(ShowRequest(auction=auction))).auction
    assert shown is not None and shown.bid_count == 1


async def test_the_seller_does_not_push_its_accept_to_the_bidders_node(
        pair: tuple[Node, Node, str]) -> None:
    # The bidder's node has the Accept from the PlaceBid reply already.
    seller, bidder, auction = pair
    assert isinstance(seller.mesh, _Direct)
    assert seller.mesh.skipped == [b""]  # the Open: to everyone
    await _bid(bidder, auction, 20)
    assert seller.mesh.skipped == [b"", BIDDER.node_id]
    shown = (await bidder.control_show(ShowRequest(auction=auction))).auction
    assert shown is not None and shown.bid_count == 1


async def test_a_refused_bid_has_no_accepted_bid(pair: tuple[Node, Node, str]) -> None:
    _, bidder, auction = pair
    await _bid(bidder, auction, 20)
    reply = await bidder.control_bid(BidRequest(auction=auction, amount="15"))
    assert reply.rejected is not None and reply.accepted_bid is None


async def test_show_pages_bids_newest_first_by_default(pair: tuple[Node, Node, str]) -> None:
    seller, bidder, auction = pair
    for amount in range(10, 55):  # 45 bids
        await _bid(bidder, auction, amount)
    for node in (seller, bidder):
        default = (await node.control_show(ShowRequest(auction=auction))).auction
        assert default is not None
        assert default.bid_count == 45 and len(default.bids) == DEFAULT_BID_PAGE
        assert [b.amount for b in default.bids] == [str(a) for a in range(35, 55)]
        assert default.best is not None and default.best.amount == "54"
        shown = auction_json(default, with_bids=True)
        assert [b["amount"] for b in shown["bids"]][:2] == ["54", "53"]
        assert shown["bid_count"] == 45 and shown["bids_from"] == 25

        older = (await node.control_show(ShowRequest(auction=auction, limit=5,
                                                     offset=40))).auction
        assert older is not None and [b.amount for b in older.bids] == [
            "10", "11", "12", "13", "14"]
        assert older.best is not None and older.best.amount == "54"  # best off the page
        lines = auction_lines(older)
        assert "  bids #1-#5 of 45, newest first (#1 is the oldest):" in lines
        assert lines.index("    Bidder 14 USDt") < lines.index("    Bidder 10 USDt")
        assert "  best bid:    54 USDt by Bidder" in lines

        first = (await node.control_show(ShowRequest(auction=auction, limit=3, offset=1,
                                                     oldest_first=True))).auction
        assert first is not None and [b.amount for b in first.bids] == ["11", "12", "13"]
        beyond = (await node.control_show(ShowRequest(auction=auction, offset=100))).auction
        assert beyond is not None and beyond.bids == [] and beyond.bid_count == 45
        assert "  bids:        45, none on this page" in auction_lines(beyond)


async def test_list_sends_summaries(pair: tuple[Node, Node, str]) -> None:
    _, bidder, auction = pair
    for amount in range(10, 35):
        await _bid(bidder, auction, amount)
    listed = await bidder.control_list(ListRequest())
    (view,) = listed.auctions
    assert len(view.bids) == 1 and view.bid_count == 25
    assert auction_json(view)["bid_count"] == 25


def test_an_older_nodes_view_with_every_bid_still_renders() -> None:
    from peer.gen.auction.v1 import BidView

    bids = [BidView(bidder=b"\x01" * 32, bidder_name="B", amount=str(a), currency="USDt")
            for a in (10, 11, 12)]
    old = AuctionView(id="x:1", seller_name="S", item="I", start_amount="10",
                      currency="USDt", bids=bids)
    assert bid_count(old) == 3
    best = best_bid(old)
    assert best is not None and best.amount == "12"
    assert auction_json(old, with_bids=True, newest_first=False)["bids"][0]["amount"] == "10"


@given(count=st.integers(0, 3000), limit=st.integers(-5, 5000),
       offset=st.integers(-5, 5000), oldest_first=st.booleans())
def test_a_page_is_a_bounded_window_of_the_bids(count: int, limit: int, offset: int,
                                                oldest_first: bool) -> None:
    page = bid_page(count, limit, offset, oldest_first)
    assert 0 <= page.start <= page.stop <= count
    want = DEFAULT_BID_PAGE if limit <= 0 else min(limit, MAX_BID_PAGE)
    assert len(page) <= want
    skip = max(offset, 0)
    if oldest_first:
        assert page.start == min(skip, count)
    else:
        assert page.stop == max(count - skip, 0)
    if skip + want <= count:
        assert len(page) == want

