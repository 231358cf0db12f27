"""Auctions as the ledger describes them: ids, accepted bids, records and notifications.

:class:`peer.core.ledger.Ledger` keeps live :class:`Auction` records (they change as
events are applied) and reports each applied event as a :data:`Notification`
(:class:`Opened`, :class:`BidAccepted` or :class:`Closed`). A notification does not
copy the auction: it holds an :class:`AuctionAt`, a cheap marker of the moment,
and builds a snapshot only when asked (:attr:`Opened.auction`).

Plain values, no rules and no I/O: the rules that produce them are in
:mod:`peer.core.ledger`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TypeVar

from peer.gen.auction.v1 import AuctionId

__all__ = [
    "NO_TERMS",
    "AcceptedBid",
    "Auction",
    "AuctionAt",
    "AuctionKey",
    "BidAccepted",
    "Closed",
    "Notification",
    "Opened",
    "Terms",
    "best_bid_only",
]

# ====================================================================== records


@dataclass(frozen=True, slots=True, order=True)
class AuctionKey:
    """An auction's id: the ``(author, seq)`` of the ``Open`` event in the seller's log."""

    author: bytes
    seq: int

    @property
    def text(self) -> str:
        """The full id as users see it: ``"<seller id hex>:<seq>"``."""
        return f"{self.author.hex()}:{self.seq}"

    def message(self) -> AuctionId:
        """The wire ``AuctionId``."""
        return AuctionId(author=self.author, seq=self.seq)

    @classmethod
    def from_message(cls, message: AuctionId) -> AuctionKey:
        """The key of a wire ``AuctionId``."""
        return cls(message.author, message.seq)


@dataclass(frozen=True, slots=True)
class AcceptedBid:
    """A bid the seller accepted.

    Attributes:
        bidder: The bidder's node id.
        bidder_name: The bidder's display name, as signed in the bid.
        amount: The amount.
        currency: The auction's currency.
        time_ms: The time of the seller's ``Accept`` event, not the bidder's own
            clock: the moment the bid became binding, ordered within the seller's log.
    """

    bidder: bytes
    bidder_name: str
    amount: Decimal
    currency: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class Terms:
    """The optional terms an ``Open`` carries; the defaults are an auction without any.

    Attributes:
        ends_at_ms: The announced end on the seller's clock; 0: the auction ends only
            when its seller closes it.
        extend_ms: The anti-sniping window W: an ``Accept`` stamped within the last W
            of the current end moves the end to its time + W. 0: none.
        min_increment: How much every bid after the first must beat the best by;
            None: any amount above the best.
        reserve: The public reserve: a best bid below it ends the auction with no sale.
        sealed_reserve: The commitment to a sealed reserve (:mod:`peer.core.sealed_reserve`),
            revealed in the Close; empty: none.
        sealed_box: The sealed reserve as only the seller can read it.
    """

    ends_at_ms: int = 0
    extend_ms: int = 0
    min_increment: Decimal | None = None
    reserve: Decimal | None = None
    sealed_reserve: bytes = b""
    sealed_box: bytes = b""

    @property
    def timed(self) -> bool:
        """Whether the auction ends on time (it announced an end)."""
        return self.ends_at_ms > 0


NO_TERMS = Terms()


@dataclass(eq=False)
class Auction:
    """One auction as the ledger knows it. The ledger's own objects are live: they
    change as events are applied; notifications hand out snapshots instead.

    Attributes:
        key: The auction id.
        seller_name: The seller's display name, as in the ``Open`` event.
        item: The item.
        start_amount: The start price.
        currency: The currency of every bid.
        opened_ms: The time of the ``Open`` event.
        bids: The accepted bids, in order; each is higher than the one before.
        closed: Whether the seller closed it.
        closed_ms: The time of the ``Close`` event, if closed.
        terms: The end, anti-sniping window, minimum increment and reserve of the Open.
        ends_ms: The current end (``terms.ends_at_ms`` moved by extensions); 0: none.
        revealed_reserve: A sealed reserve, once the Close revealed it.
    """

    key: AuctionKey
    seller_name: str
    item: str
    start_amount: Decimal
    currency: str
    opened_ms: int
    bids: list[AcceptedBid] = field(default_factory=list)
    closed: bool = False
    closed_ms: int | None = None
    terms: Terms = NO_TERMS
    ends_ms: int = 0
    revealed_reserve: Decimal | None = None

    @property
    def seller(self) -> bytes:
        """The seller's node id."""
        return self.key.author

    @property
    def best(self) -> AcceptedBid | None:
        """The highest accepted bid (always the last one), if any."""
        return self.bids[-1] if self.bids else None

    @property
    def reserve(self) -> Decimal | None:
        """The reserve: the public one, or a sealed one once revealed; None if none (yet)."""
        return self.terms.reserve if self.terms.reserve is not None else self.revealed_reserve

    @property
    def reserve_known(self) -> bool:
        """False while a sealed reserve is not revealed (nobody but its seller knows it)."""
        return not self.terms.sealed_reserve or self.revealed_reserve is not None

    @property
    def reserve_met(self) -> bool:
        """Whether the best bid reaches the reserve (no reserve: whether there is a bid).

        False while a sealed reserve is unrevealed: whether it is met is not known yet.
        """
        best = self.best
        reserve = self.reserve
        return (best is not None and self.reserve_known
                and (reserve is None or best.amount >= reserve))

    @property
    def winner(self) -> AcceptedBid | None:
        """The winning bid: the best one once the auction is closed, if it meets the reserve."""
        return self.best if self.closed and self.reserve_met else None

    @property
    def ended_by_time(self) -> bool:
        """Closed at or after its end (rather than by its seller before it)."""
        return (self.closed and self.ends_ms > 0 and self.closed_ms is not None
                and self.closed_ms >= self.ends_ms)

    def has_ended(self, now_ms: int) -> bool:
        """Whether a timed auction is past its current end at ``now_ms`` (closed or not)."""
        return self.ends_ms > 0 and now_ms >= self.ends_ms

    @property
    def label(self) -> str:
        """The readable name, ``"Client#1->Pic#1"``."""
        return f"{self.seller_name}->{self.item}"


# ====================================================================== notifications


@dataclass(frozen=True, slots=True)
class AuctionAt:
    """An auction as it was right after one event: cheap to take (no copying).

    Bids are only ever appended, so the first ``bid_count`` of the live list are
    exactly the bids of that moment.
    """

    live: Auction
    bid_count: int
    closed: bool
    closed_ms: int | None
    ends_ms: int

    @classmethod
    def of(cls, auction: Auction) -> AuctionAt:
        return cls(auction, len(auction.bids), auction.closed, auction.closed_ms,
                   auction.ends_ms)

    def auction(self) -> Auction:
        a = self.live
        return Auction(a.key, a.seller_name, a.item, a.start_amount, a.currency, a.opened_ms,
                       a.bids[:self.bid_count], self.closed, self.closed_ms, a.terms,
                       self.ends_ms, a.revealed_reserve if self.closed else None)


class _Snapshot:
    """The ``auction`` property every notification has."""

    __slots__ = ()
    at: AuctionAt

    @property
    def auction(self) -> Auction:
        """The auction as it was right after this event (a copy)."""
        return self.at.auction()


@dataclass(frozen=True, slots=True)
class Opened(_Snapshot):
    """An auction was opened. ``auction`` is a fresh snapshot on every access."""

    text: str
    at: AuctionAt = field(repr=False)


@dataclass(frozen=True, slots=True)
class BidAccepted(_Snapshot):
    """A seller accepted a bid. ``auction`` is a fresh snapshot on every access.

    ``extended_from_ms`` is the end before this bid moved it (anti-sniping); 0 if the
    bid did not move the end.
    """

    bid: AcceptedBid
    text: str
    at: AuctionAt = field(repr=False)
    extended_from_ms: int = 0


@dataclass(frozen=True, slots=True)
class Closed(_Snapshot):
    """A seller closed an auction; ``winner`` is None when there were no bids or the
    best one is below the reserve."""

    winner: AcceptedBid | None
    text: str
    at: AuctionAt = field(repr=False)


Notification = Opened | BidAccepted | Closed
_NoteT = TypeVar("_NoteT", bound=Notification)


def best_bid_only(note: _NoteT) -> _NoteT:
    """``note`` whose auction snapshot holds only its last (best) bid.

    For one-line output: rendering every bid of a busy auction per notification
    made each bid cost more as the auction grew.
    """
    at = note.at
    if at.bid_count <= 1:
        return note
    live = replace(at.live, bids=at.live.bids[at.bid_count - 1:at.bid_count])
    return replace(note, at=replace(at, live=live, bid_count=1))
