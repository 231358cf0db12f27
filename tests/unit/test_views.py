"""peer.views: ledger records as the Control service's wire views."""

from __future__ import annotations

from decimal import Decimal

from peer.auctions import AcceptedBid, Auction, AuctionKey
from peer.gen.auction.v1 import AuctionState, AuctionView
from peer.views import auction_view, bid_view

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
