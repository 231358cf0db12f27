"""Ledger records as the wire views of the Control service (``AuctionView``, ``BidView``)."""

from __future__ import annotations

from peer.auctions import AcceptedBid, Auction
from peer.gen.auction.v1 import AuctionState, AuctionView, BidView
from peer.rules import format_amount

__all__ = ["auction_view", "bid_view"]


def bid_view(bid: AcceptedBid) -> BidView:
    """The wire view of an accepted bid; the amount in canonical text ("75.5")."""
    return BidView(bidder=bid.bidder, bidder_name=bid.bidder_name,
                   amount=format_amount(bid.amount), currency=bid.currency, time_ms=bid.time_ms)


def auction_view(auction: Auction) -> AuctionView:
    """The wire view of an auction (``closed_ms`` is 0 while it is open)."""
    return AuctionView(
        id=auction.key.text,
        seller=auction.seller,
        seller_name=auction.seller_name,
        item=auction.item,
        start_amount=format_amount(auction.start_amount),
        currency=auction.currency,
        state=AuctionState.CLOSED if auction.closed else AuctionState.OPEN,
        bids=[bid_view(b) for b in auction.bids],
        opened_ms=auction.opened_ms,
        closed_ms=auction.closed_ms or 0,
    )
