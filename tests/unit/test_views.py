"""peer.net.views: ledger records as the Control service's wire views."""

from __future__ import annotations

from decimal import Decimal

from peer.core.auctions import AcceptedBid, Auction, AuctionKey, Terms
from peer.gen.auction.v1 import AuctionState, AuctionView, CloseReason
from peer.net.views import auction_view, bid_view

SELLER = b"\x01" * 32
BIDDER = b"\x02" * 32


def test_views() -> None:
    bid = AcceptedBid(BIDDER, "Client#2", Decimal("80.50"), "USDt", 1234)
    auction = Auction(AuctionKey(SELLER, 1), "Client#1", "Pic#1", Decimal("75.0"), "USDt", 1000,
                      [bid])
    view = auction_view(auction)
    assert view.id == f"{SELLER.hex()}:1"
    assert (view.seller, view.seller_name, view.item, view.start_amount, view.currency) == (
        SELLER, "Client#1", "Pic#1", "75", "USDt")
    assert view.state == AuctionState.OPEN and view.opened_ms == 1000 and view.closed_ms == 0
    assert view.bids == [bid_view(bid)]
    assert (view.bids[0].bidder, view.bids[0].bidder_name, view.bids[0].amount,
            view.bids[0].currency, view.bids[0].time_ms) == (BIDDER, "Client#2", "80.5", "USDt",
                                                              1234)
    auction.closed, auction.closed_ms = True, 2000
    closed = auction_view(auction)
    assert closed.state == AuctionState.CLOSED and closed.closed_ms == 2000
    assert AuctionView.parse(bytes(closed)).id == view.id  # serializable as is


def test_timed_views_say_ended_awaiting_close_then_how_it_closed() -> None:
    terms = Terms(5000, 1000, Decimal("1"), Decimal("100"))
    bid = AcceptedBid(BIDDER, "Client#2", Decimal("80"), "USDt", 4500)
    auction = Auction(AuctionKey(SELLER, 1), "Client#1", "Pic#3", Decimal("50"), "USDt", 1000,
                      [bid], terms=terms, ends_ms=5500)
    view = auction_view(auction, now_ms=5499)
    assert view.state == AuctionState.OPEN
    assert (view.ends_at_ms, view.announced_ends_at_ms, view.extend_ms) == (5500, 5000, 1000)
    assert (view.min_increment, view.reserve, view.reserve_met) == ("1", "100", False)
    assert view.close_reason == CloseReason.UNSPECIFIED
    assert auction_view(auction, now_ms=5500).state == AuctionState.ENDED
    assert auction_view(auction).state == AuctionState.OPEN  # no clock: the event's moment
    auction.closed, auction.closed_ms = True, 5600
    closed = auction_view(auction, now_ms=9999)
    assert closed.state == AuctionState.CLOSED and closed.close_reason == CloseReason.ENDED
    auction.closed_ms = 3000
    assert auction_view(auction).close_reason == CloseReason.BY_SELLER
    untimed = auction_view(Auction(AuctionKey(SELLER, 2), "Client#1", "Pic#1", Decimal("75"),
                                   "USDt", 1000), now_ms=10**15)
    assert untimed.state == AuctionState.OPEN and untimed.ends_at_ms == 0
    assert (untimed.min_increment, untimed.reserve) == ("", "")
