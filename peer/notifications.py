"""Ledger notifications as the wire carries them (``Notification``).

One translation serves `serve`'s output, `serve --json` and `watch`, so every
consumer names auctions, amounts and winners the same way.
"""

from __future__ import annotations

from peer.auctions import BidAccepted, Opened
from peer.auctions import Notification as LedgerNotification  # the wire has a Notification
from peer.gen.auction.v1 import Notification, NotificationKind
from peer.views import auction_view, bid_view

__all__ = ["LedgerNotification", "notification_message"]


def notification_message(note: LedgerNotification) -> Notification:
    """Turn a ledger notification into the wire ``Notification``."""
    if isinstance(note, Opened):
        return Notification(kind=NotificationKind.OPENED, auction=auction_view(note.auction),
                            text=note.text)
    if isinstance(note, BidAccepted):
        return Notification(kind=NotificationKind.BID, auction=auction_view(note.auction),
                            bid=bid_view(note.bid), text=note.text)
    winner = bid_view(note.winner) if note.winner is not None else None
    return Notification(kind=NotificationKind.CLOSED, auction=auction_view(note.auction),
                        bid=winner, text=note.text)
