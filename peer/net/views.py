"""Ledger records as the wire views of the Control service (``AuctionView``, ``BidView``)."""

from __future__ import annotations

from typing import Final

from peer.core.auctions import AcceptedBid, Auction
from peer.core.rules import format_amount
from peer.gen.auction.v1 import AuctionState, AuctionView, BidView, CloseReason

__all__ = ["DEFAULT_BID_PAGE", "MAX_BID_PAGE", "auction_view", "bid_page", "bid_view",
           "summary_view"]

#: `show` without --limit: the newest 20 bids.
DEFAULT_BID_PAGE: Final = 20
#: The most bids one `show` reply carries (about 100 bytes each on the wire).
MAX_BID_PAGE: Final = 1000


def bid_view(bid: AcceptedBid) -> BidView:
    """The wire view of an accepted bid; the amount in canonical text ("75.5")."""
    return BidView(bidder=bid.bidder, bidder_name=bid.bidder_name,
                   amount=format_amount(bid.amount), currency=bid.currency, time_ms=bid.time_ms)


def bid_page(bid_count: int, limit: int, offset: int, oldest_first: bool) -> range:
    """Which bids (indexes, oldest first) a `show` with these arguments gets.

    ``limit`` 0 is :data:`DEFAULT_BID_PAGE`, larger than :data:`MAX_BID_PAGE` is that;
    negative values count as 0. Newest first, ``offset`` skips the newest bids.
    """
    limit = DEFAULT_BID_PAGE if limit <= 0 else min(limit, MAX_BID_PAGE)
    offset = max(offset, 0)
    if oldest_first:
        start = min(offset, bid_count)
        return range(start, min(start + limit, bid_count))
    stop = max(bid_count - offset, 0)
    return range(max(stop - limit, 0), stop)


def summary_view(auction: Auction, now_ms: int | None = None) -> AuctionView:
    """The view with only the newest (best) bid: its size never grows with the bids."""
    count = len(auction.bids)
    return auction_view(auction, now_ms, bids=range(max(count - 1, 0), count))


def auction_view(auction: Auction, now_ms: int | None = None, *,
                 bids: range | None = None) -> AuctionView:
    """The wire view of an auction (``closed_ms`` is 0 while it is open), with the
    accepted bids whose indexes are in ``bids`` (a contiguous range; None: every one).

    With ``now_ms`` (this node's clock), an open auction past its end is ``ENDED``:
    awaiting its seller's Close, its winner already known. Without it (the views in
    notifications, which describe the moment of an event) it is ``OPEN``.
    """
    terms = auction.terms
    window = range(len(auction.bids)) if bids is None else bids
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
        bids=[bid_view(b) for b in auction.bids[window.start:window.stop]],
        opened_ms=auction.opened_ms,
        closed_ms=auction.closed_ms or 0,
        ends_at_ms=auction.ends_ms,
        announced_ends_at_ms=terms.ends_at_ms,
        extend_ms=terms.extend_ms,
        min_increment=format_amount(terms.min_increment) if terms.min_increment else "",
        # A sealed reserve only once the Close revealed it: never its value before.
        reserve=format_amount(auction.reserve) if auction.reserve is not None else "",
        reserve_met=auction.reserve_met,
        close_reason=reason,
        bid_count=len(auction.bids),
        first_bid_index=window.start,
        best=bid_view(auction.bids[-1]) if auction.bids else None,
        reserve_sealed=bool(terms.sealed_reserve),
    )
