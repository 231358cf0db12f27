"""Ledger notifications as the wire carries them (``Notification``).

One translation serves `serve`'s output, `serve --json` and `watch`, so every
consumer names auctions, amounts and winners the same way.
"""

from __future__ import annotations

from peer.core.auctions import Auction, BidAccepted, Opened, best_bid_only
from peer.core.auctions import Notification as LedgerNotification  # the wire has a Notification
from peer.core.rules import format_amount
from peer.gen.auction.v1 import AuctionView, Notification, NotificationKind
from peer.net.views import bid_view, summary_view

__all__ = ["LedgerNotification", "ended_message", "notification_message"]


def notification_message(note: LedgerNotification) -> Notification:
    """Turn a ledger notification into the wire ``Notification``."""
    if isinstance(note, Opened):
        return Notification(kind=NotificationKind.OPENED, auction=_summary(note),
                            text=note.text)
    if isinstance(note, BidAccepted):
        return Notification(kind=NotificationKind.BID, auction=_summary(note),
                            bid=bid_view(note.bid), text=note.text)
    winner = bid_view(note.winner) if note.winner is not None else None
    return Notification(kind=NotificationKind.CLOSED, auction=_summary(note),
                        bid=winner, text=note.text)


def _summary(note: LedgerNotification) -> AuctionView:
    """The auction at ``note``'s moment with its best bid only: never a copy of every bid."""
    view = summary_view(best_bid_only(note).auction)
    count = note.at.bid_count
    view.bid_count = count
    view.first_bid_index = max(count - 1, 0)
    return view


def ended_message(auction: Auction, now_ms: int) -> Notification:
    """An open auction passed its end by this node's clock: the seller's Close is awaited.

    Not a ledger event (nothing was signed): every node but the seller's says so once,
    with the winner the Close will name (``bid``), or why there will be none.
    """
    best = auction.best
    winner = None
    if best is None:
        outcome = "no bids"
    elif not auction.reserve_known:  # only the seller knows whether it is met
        outcome = (f"{best.bidder_name} -> {format_amount(best.amount)} {best.currency}"
                   " if the sealed reserve is met")
    elif not auction.reserve_met:
        outcome = "no sale (reserve not met)"
    else:
        outcome = f"{best.bidder_name} -> {format_amount(best.amount)} {best.currency}"
        winner = bid_view(best)
    text = (f"{auction.label} ended; awaiting {auction.seller_name}'s close, which will say:"
            f" {outcome}")
    return Notification(kind=NotificationKind.ENDED, auction=summary_view(auction, now_ms),
                        bid=winner, text=text)
