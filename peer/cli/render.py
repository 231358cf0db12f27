"""How auctions, notifications and status look to people and to scripts.

One place renders the wire views (``AuctionView``, ``Notification``,
``StatusReply``) as readable text and as JSON, so `serve`, `show`, `list`,
`watch` and `status` name auctions, amounts and winners the same way.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from peer.core.rules import format_duration, format_time
from peer.gen.auction.v1 import (
    AuctionState,
    AuctionView,
    BidView,
    CloseReason,
    Notification,
    NotificationKind,
    StatusReply,
)

__all__ = [
    "auction_json",
    "auction_label",
    "auction_lines",
    "best_bid",
    "bid_count",
    "bid_json",
    "bid_lines",
    "list_lines",
    "notification_json",
    "short_auction_ids",
    "short_id",
    "status_json",
    "status_lines",
    "time_left",
]

_KIND_NAMES = {
    NotificationKind.OPENED: "opened",
    NotificationKind.BID: "bid",
    NotificationKind.CLOSED: "closed",
    NotificationKind.PEER_UP: "peer_up",
    NotificationKind.PEER_DOWN: "peer_down",
    NotificationKind.ENDED: "ended",
}
_STATE_NAMES = {AuctionState.OPEN: "open", AuctionState.ENDED: "ended",
                AuctionState.CLOSED: "closed"}
NO_SALE = "no sale (reserve not met)"


def short_id(node_id: bytes) -> str:
    """The first 8 hex digits of a node id: enough to tell nodes apart on screen."""
    return node_id.hex()[:8]


def auction_label(view: AuctionView) -> str:
    """``Client#1->Pic#1``: how people name an auction."""
    return f"{view.seller_name}->{view.item}"


def _state(view: AuctionView) -> str:
    return _STATE_NAMES.get(view.state, "open")


def _now_ms(now_ms: int | None) -> int:
    return now_ms if now_ms is not None else time.time_ns() // 1_000_000


def _closed_by(view: AuctionView) -> str | None:
    """How a closed auction closed: ``"ended"`` (at or after its end) or ``"seller"``."""
    if view.state != AuctionState.CLOSED:
        return None
    return "ended" if view.close_reason == CloseReason.ENDED else "seller"


def _reserve_unknown(view: AuctionView) -> bool:
    """A sealed reserve not yet revealed: whether it is met is not known here."""
    return view.reserve_sealed and not view.reserve


def _result(view: AuctionView) -> str:
    """What the auction comes to (for closed and ended ones): sold, no bids, no sale."""
    if not bid_count(view):
        return "no bids"
    if _reserve_unknown(view):
        return "sold if the sealed reserve is met"
    return "sold" if view.reserve_met else NO_SALE


def time_left(view: AuctionView, now_ms: int | None = None) -> str:
    """``"2m30s left"``, ``"ended"``, ``"closed"``, or ``""`` for an auction without an end."""
    if view.state == AuctionState.CLOSED:
        return "closed"
    if not view.ends_at_ms:
        return ""
    left = view.ends_at_ms - _now_ms(now_ms)
    if left <= 0 or view.state == AuctionState.ENDED:
        return "ended"
    return f"{format_duration(max(1000, left // 1000 * 1000))} left"


def bid_json(bid: BidView) -> dict[str, Any]:
    """One bid as JSON."""
    return {"bidder": bid.bidder_name, "bidder_id": bid.bidder.hex(),
            "amount": bid.amount, "currency": bid.currency, "time_ms": bid.time_ms}


def best_bid(view: AuctionView) -> BidView | None:
    """The best bid; an older node's views have no ``best``, but every bid, the best last."""
    if view.best is not None:
        return view.best
    return view.bids[-1] if view.bids and not view.bid_count else None


def bid_count(view: AuctionView) -> int:
    """How many bids the auction has accepted (an older node's views hold every one)."""
    return max(int(view.bid_count), int(view.first_bid_index) + len(view.bids))


def auction_json(view: AuctionView, *, with_bids: bool = False,
                 newest_first: bool = True) -> dict[str, Any]:
    """The JSON object for one auction; ``with_bids`` adds the bids the view carries
    (newest first unless ``newest_first`` is False), ``bids_from`` the index (0-based,
    oldest first) of the oldest of them."""
    best = best_bid(view)
    out: dict[str, Any] = {
        "id": view.id,
        "seller": view.seller_name,
        "seller_id": view.seller.hex(),
        "item": view.item,
        "label": auction_label(view),
        "start_amount": view.start_amount,
        "currency": view.currency,
        "state": _state(view),
        # `is not None`: a betterproto2 message's truth value walks all its fields.
        "best": bid_json(best) if best is not None else None,
        "bid_count": bid_count(view),
        # The terms: null when the Open set none.
        "ends_at_ms": view.ends_at_ms or None,
        "announced_ends_at_ms": view.announced_ends_at_ms or None,
        "extend_ms": view.extend_ms or None,
        "min_increment": view.min_increment or None,
        "reserve": view.reserve or None,
        "reserve_sealed": view.reserve_sealed,
        # null: a sealed reserve not revealed yet, so nobody here knows.
        "reserve_met": None if _reserve_unknown(view) else view.reserve_met,
    }
    if view.state == AuctionState.CLOSED:
        winner = best if best is not None and view.reserve_met else None
        out["winner"] = bid_json(winner) if winner is not None else None
        out["closed_by"] = _closed_by(view)
        out["result"] = _result(view)
    if with_bids:
        bids = view.bids[::-1] if newest_first else view.bids
        out["bids"] = [bid_json(b) for b in bids]
        out["bids_from"] = view.first_bid_index
    return out


def auction_lines(view: AuctionView, now_ms: int | None = None, *,
                  newest_first: bool = True) -> list[str]:
    """`show`: the auction, its state and terms, the bids the view carries (a page: says
    which of how many), the best bid or winner.

    ``now_ms`` (default: this machine's clock) is what the time left is counted from.
    """
    state = _state(view)
    if view.state == AuctionState.ENDED:
        state = f"ended, awaiting {view.seller_name}'s close"
    elif view.state == AuctionState.CLOSED and view.ends_at_ms:
        state = "closed (ended)" if _closed_by(view) == "ended" else "closed by its seller"
    lines = [
        f"{auction_label(view)}  ({view.id})",
        f"  state:       {state}",
        f"  start price: {view.start_amount} {view.currency}",
    ]
    if view.ends_at_ms:
        left = time_left(view, now_ms)
        moved = (f", moved from {format_time(view.announced_ends_at_ms)}"
                 if view.announced_ends_at_ms and view.ends_at_ms != view.announced_ends_at_ms
                 else "")
        lines.append(f"  ends:        {format_time(view.ends_at_ms)}"
                     f"{f' ({left})' if left not in ('', 'closed') else ''}{moved}")
    if view.extend_ms:
        lines.append(f"  extension:   a bid in the last {format_duration(view.extend_ms)}"
                     " moves the end")
    if view.min_increment:
        lines.append(f"  increment:   {view.min_increment} {view.currency}")
    if _reserve_unknown(view):
        lines.append("  reserve:     sealed (revealed when it closes)")
    elif view.reserve:
        met = "met" if view.reserve_met else "not met"
        sealed = ", sealed until the close" if view.reserve_sealed else ""
        lines.append(f"  reserve:     {view.reserve} {view.currency}{sealed} ({met})")
    count = bid_count(view)
    if view.bids:
        if len(view.bids) == count:
            lines.append(f"  bids ({count}, {'newest' if newest_first else 'oldest'} first):")
        else:
            first = view.first_bid_index + 1
            last = view.first_bid_index + len(view.bids)
            lines.append(f"  bids #{first}-#{last} of {count}, "
                         f"{'newest' if newest_first else 'oldest'} first (#1 is the oldest):")
        bids = view.bids[::-1] if newest_first else view.bids
        lines += [f"    {b.bidder_name} {b.amount} {b.currency}" for b in bids]
    elif count:
        lines.append(f"  bids:        {count}, none on this page")
    else:
        lines.append("  bids:        none")
    best = best_bid(view)
    if view.state == AuctionState.CLOSED:
        if best is None:
            lines.append("  winner:      none (closed with no bids)")
        elif not view.reserve_met:
            lines.append(f"  winner:      none, {NO_SALE}")
        else:
            lines.append(f"  winner:      {best.bidder_name} -> {best.amount} {best.currency}")
    elif best is not None:
        lines.append(f"  best bid:    {best.amount} {best.currency} by {best.bidder_name}")
        if view.state == AuctionState.ENDED:
            if _reserve_unknown(view):
                lines.append(f"  will win:    {best.bidder_name} -> {best.amount}"
                             f" {best.currency}, if the sealed reserve is met")
            elif view.reserve_met:
                lines.append(f"  will win:    {best.bidder_name} -> {best.amount}"
                             f" {best.currency}")
            else:
                lines.append(f"  will win:    nobody, {NO_SALE}")
    return lines


def bid_lines(accepted: BidView, view: AuctionView) -> list[str]:
    """`bid`: the accepted bid, then the auction's summary (not its bids)."""
    best = best_bid(view)
    lines = [f"accepted: {accepted.bidder_name} {accepted.amount} {accepted.currency} on "
             f"{auction_label(view)}  ({view.id})"]
    summary = f"  {_state(view)}, {bid_count(view)} bid(s)"
    if best is not None and best != accepted:
        summary += f", best now {best.amount} {best.currency} by {best.bidder_name}"
    return [*lines, summary]


def short_auction_ids(views: list[AuctionView]) -> dict[str, str]:
    """A short id for each auction, ``<seller id prefix>:<seq>`` (``ab12cd34:1``).

    The seller prefix is the shortest (8 hex digits at least) that tells every seller
    in ``views`` apart, so each short id names one auction as long as ``views`` holds
    every auction the node knows; the node resolves this form (``Ledger.resolve``).
    """
    sellers = sorted({v.seller.hex() for v in views})
    length = 8
    while length < 64 and any(a[:length] == b[:length] for a, b in itertools.pairwise(sellers)):
        length += 1
    return {v.id: f"{v.seller.hex()[:length]}:{v.id.rpartition(':')[2]}" for v in views}


def list_lines(views: list[AuctionView], ids: dict[str, str] | None = None,
               now_ms: int | None = None) -> list[str]:
    """`list`: one line per auction, starting with the short id to paste into `show`,
    with the time left of those that end on time."""
    if not views:
        return ["no auctions"]
    ids = ids if ids is not None else short_auction_ids(views)
    now = _now_ms(now_ms)
    lines = []
    for v in views:
        best = best_bid(v)
        lead = "winner" if v.state == AuctionState.CLOSED else "best"
        if best is not None and not v.reserve_met and v.state == AuctionState.CLOSED:
            price = f"{NO_SALE}, best {best.amount} {best.currency}"
        elif best is not None:
            price = f"{lead} {best.bidder_name} -> {best.amount} {best.currency}"
        else:
            price = f"start {v.start_amount} {v.currency}, no bids"
        left = time_left(v, now) if v.state != AuctionState.CLOSED else ""
        when = f"  ({left})" if left else ""
        lines.append(f"{ids[v.id]:<12} {auction_label(v):<30} {_state(v):<6} {price}{when}")
    return lines


def notification_json(note: Notification) -> dict[str, Any]:
    """One JSON object per notification (the `--json` line format)."""
    out: dict[str, Any] = {"event": _KIND_NAMES.get(note.kind, "unknown")}
    if note.kind in (NotificationKind.PEER_UP, NotificationKind.PEER_DOWN):
        out.update(peer=note.peer_name, peer_id=note.peer.hex())
    if note.auction is not None:
        out["auction"] = auction_json(note.auction)
    if note.kind == NotificationKind.BID and note.bid is not None:
        out.update(bidder=note.bid.bidder_name, bidder_id=note.bid.bidder.hex(),
                   amount=note.bid.amount, currency=note.bid.currency)
    if note.kind in (NotificationKind.CLOSED, NotificationKind.ENDED):
        # ended: the winner the seller's Close will name (the auction is not closed yet).
        if note.bid is not None:
            out.update(winner=note.bid.bidder_name, winner_id=note.bid.bidder.hex(),
                       amount=note.bid.amount, currency=note.bid.currency)
        else:
            out.update(winner=None, amount=None, currency=None)
        if note.auction is not None:
            out["result"] = _result(note.auction)
            if note.kind == NotificationKind.CLOSED:
                out["closed_by"] = _closed_by(note.auction)
    if note.kind == NotificationKind.BID and note.auction is not None and note.auction.ends_at_ms:
        out["ends_at_ms"] = note.auction.ends_at_ms
    out["text"] = note.text
    return out


def status_json(status: StatusReply) -> dict[str, Any]:
    return {
        "name": status.name,
        "node_id": status.node_id.hex(),
        "address": status.address,
        "dial_address": status.dial_address or None,
        "self_check": status.self_check,
        "self_check_detail": status.self_check_detail,
        "events": status.events,
        "peers": [{"name": p.name, "node_id": p.node_id.hex(), "state": p.state,
                   "since": _iso(p.since_ms), "address": p.address, "up": p.up,
                   "detail": p.detail} for p in status.peers],
        "unanswered_addresses": status.unanswered_addresses,
        "heads": {h.author.hex(): h.seq for h in status.heads},
        "forks": [{"author": f.author.hex(), "seq": f.seq} for f in status.forks],
    }


def status_lines(status: StatusReply) -> list[str]:
    """`status`: one line per peer node (name, state, since when), not per address."""
    lines = [f"{status.name} ({short_id(status.node_id)}) on {status.address}: "
             f"{status.events} event(s) from {len(status.heads)} author(s)"]
    if status.self_check == "passed":
        lines.append(f"  peers dial {status.dial_address} (self-check passed)")
    elif status.self_check:
        lines.append(f"  self-check {status.self_check.upper()}: {status.self_check_detail}")
    if not status.peers:
        lines.append("  peers: none known yet")
    for p in status.peers:
        who = f"{p.name} ({short_id(p.node_id)})"
        where = f"at {p.address}" if p.up else f"last at {p.address}"
        detail = f" ({p.detail})" if p.detail else ""
        lines.append(f"  peer {who:<28} {p.state:<4} since {_clock(p.since_ms)}  "
                     f"{where}{detail}")
    if status.unanswered_addresses:
        lines.append(f"  {status.unanswered_addresses} address(es) from Grape never "
                     "answered")
    for f in status.forks:
        lines.append(f"  FORK: author {short_id(f.author)} published two events at seq {f.seq}")
    return lines


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000)) if ms else ""


def _clock(ms: int) -> str:
    """Local time of day, with the date when it was not today."""
    if not ms:
        return "?"
    then = time.localtime(ms / 1000)
    today = time.localtime()
    same_day = then[:3] == today[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", then)
