"""Ledger records as the wire views of the Control service (``AuctionView``, ``BidView``)."""

from __future__ import annotations

from peer.auctions import AcceptedBid, Auction
from peer.gen.auction.v1 import AuctionState, AuctionView, BidView, CloseReason
from peer.rules import format_amount

__all__ = ["auction_view", "bid_view"]


def bid_view(bid: AcceptedBid) -> BidView:
    """The wire view of an accepted bid; the amount in canonical text ("75.5")."""
    return BidView(bidder=bid.bidder, bidder_name=bid.bidder_name,
                   amount=format_amount(bid.amount), currency=bid.currency, time_ms=bid.time_ms)


def auction_view(auction: Auction, now_ms: int | None = None) -> AuctionView:
    """The wire view of an auction (``closed_ms`` is 0 while it is open).

    With ``now_ms`` (this node's clock), an open auction past its end is ``ENDED``:
    awaiting its seller's Close, its winner already known. Without it (the views in
    notifications, which describe the moment of an event) it is ``OPEN``.
    """
    terms = auction.terms
    if auction.closed:
        state = AuctionState.CLOSED
    elif now_ms is not None and auction.has_ended(now_ms):
        state = AuctionState.ENDED
    else:
        state = AuctionState.OPEN
    if not auction.closed:
        reason = CloseReason.UNSPECIFIED
    else:
        reason = CloseReason.ENDED if auction.ended_by_time else CloseReason.BY_SELLER
    return AuctionView(
        id=auction.key.text,
        seller=auction.seller,
        seller_name=auction.seller_name,
        item=auction.item,
        start_amount=format_amount(auction.start_amount),
        currency=auction.currency,
        state=state,
        bids=[bid_view(b) for b in auction.bids],
        opened_ms=auction.opened_ms,
        closed_ms=auction.closed_ms or 0,
        ends_at_ms=auction.ends_ms,
        announced_ends_at_ms=terms.ends_at_ms,
        extend_ms=terms.extend_ms,
        min_increment=format_amount(terms.min_increment) if terms.min_increment else "",
        reserve=format_amount(terms.reserve) if terms.reserve else "",
        reserve_met=auction.reserve_met,
        close_reason=reason,
    )
