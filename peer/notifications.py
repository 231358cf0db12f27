"""Ledger notifications as the wire carries them (``Notification``).

One translation serves `serve`'s output, `serve --json` and `watch`, so every
consumer names auctions, amounts and winners the same way.
"""

from __future__ import annotations

from peer.auctions import BidAccepted, Opened, best_bid_only
from peer.auctions import Notification as LedgerNotification  # the wire has a Notification
from peer.gen.auction.v1 import AuctionView, Notification, NotificationKind
from peer.views import bid_view, summary_view

__all__ = ["LedgerNotification", "notification_message"]


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
