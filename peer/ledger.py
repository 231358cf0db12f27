"""The auction rules as a sans-IO state machine: signed events in, state and notifications out.

Like h11's ``Connection``, :class:`Ledger` does no I/O at all (no trio, sqlite,
grpclib or clock; time is an argument): the node feeds it ``SignedEvent``s from its
store, its peers and itself, persists what :meth:`Ledger.apply` reports as applied,
and forwards the notifications. Tests drive it without sockets.

Data model (DESIGN.md section 4): every node appends ``Event``s to its own log; an
event is ``(author, seq, prev, time_ms, author_name, body)`` with ``prev`` the
sha256 of the author's previous event bytes. ``Open`` creates the auction
``(author, seq)``; ``Accept`` and ``Close`` always concern an auction in the *same*
author's log (the seller is the auctioneer). So an event's validity depends only on
its own author's earlier events, and applying each author's log in seq order gives
the same state in every interleaving of authors (DESIGN.md section 5).

Rules (DESIGN.md section 5): the first bid must be >= the start price and every
later bid > the best; the currency must match; the seller cannot bid on its own
auction; closed auctions take no bids; only the seller closes. A bid carries the
bidder's own Ed25519 signature, checked by the seller before accepting
(:meth:`Ledger.check_bid`) and again by every node that applies the ``Accept``, so a
seller cannot put words in a bidder's mouth.

Hot path: the signed bytes are decoded once by :mod:`peer.wire` (not by
betterproto2, which costs more than the signature check) and hashed once with
sha256; nothing is re-serialized. A batch from a peer is decoded once into
:class:`DecodedEvent` records (:func:`decode_signed`), which the duplicate check
(:meth:`Ledger.is_applied`), the signature checks on worker threads
(:func:`signature_checks`) and :meth:`Ledger.apply_decoded` all share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Final, Protocol, TypeVar

from peer.envelopes import encode_bid, encode_event
from peer.gen.auction.v1 import (
    Accept,
    AuctionId,
    Bid,
    Close,
    Event,
    Open,
    RejectCode,
    SignedBid,
    SignedEvent,
)
from peer.identity import NODE_ID_BYTES, verify
from peer.rules import (
    Rejection,
    check_currency,
    check_item,
    check_name,
    format_amount,
    parse_amount,
)
from peer.wire import (
    AcceptBody,
    BidFields,
    CloseBody,
    EventFields,
    OpenBody,
    WireError,
    decode_bid,
    decode_event,
)

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_HELD_BYTES",
    "MAX_HELD_PER_AUTHOR",
    "MAX_HELD_TOTAL",
    "AcceptedBid",
    "ApplyResult",
    "Auction",
    "AuctionKey",
    "BidAccepted",
    "Closed",
    "DecodedEvent",
    "Ledger",
    "LoggedEvent",
    "Notification",
    "Opened",
    "Rejection",
    "SignatureCheck",
    "Signer",
    "best_bid_only",
    "checks_pass",
    "decode_signed",
    "format_amount",
    "make_signed_bid",
    "parse_amount",
    "sign_event",
    "signature_checks",
    "signatures_valid",
]

#: Larger events are refused unread; a real one is ~300 bytes.
MAX_EVENT_BYTES: Final = 64 * 1024
#: Events waiting behind a gap, per author and in total (count and bytes): bounded
#: memory whatever peers send; beyond it they are refused, and sync fetches them again
#: once the gap is filled.
MAX_HELD_PER_AUTHOR: Final = 1024
MAX_HELD_TOTAL: Final = 8192
MAX_HELD_BYTES: Final = 16 * 1024 * 1024
#: seq is uint64 on the wire but a signed 64-bit INTEGER in the store.
MAX_SEQ: Final = 2**63 - 1
_AMBIGUOUS_LISTED: Final = 10  # candidates quoted in an AMBIGUOUS_AUCTION reason


class Signer(Protocol):
    """What signing needs of an identity (:class:`peer.identity.Identity` is one)."""

    @property
    def node_id(self) -> bytes: ...

    @property
    def name(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


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

    @property
    def seller(self) -> bytes:
        """The seller's node id."""
        return self.key.author

    @property
    def best(self) -> AcceptedBid | None:
        """The highest accepted bid (always the last one), if any."""
        return self.bids[-1] if self.bids else None

    @property
    def winner(self) -> AcceptedBid | None:
        """The winning bid: the best one, once the auction is closed."""
        return self.best if self.closed else None

    @property
    def label(self) -> str:
        """The readable name, ``"Client#1->Pic#1"``."""
        return f"{self.seller_name}->{self.item}"


@dataclass(frozen=True, slots=True)
class _AuctionAt:
    """An auction as it was right after one event: cheap to take (no copying).

    Bids are only ever appended, so the first ``bid_count`` of the live list are
    exactly the bids of that moment.
    """

    live: Auction
    bid_count: int
    closed: bool
    closed_ms: int | None

    @classmethod
    def of(cls, auction: Auction) -> _AuctionAt:
        return cls(auction, len(auction.bids), auction.closed, auction.closed_ms)

    def auction(self) -> Auction:
        a = self.live
        return Auction(a.key, a.seller_name, a.item, a.start_amount, a.currency, a.opened_ms,
                       a.bids[:self.bid_count], self.closed, self.closed_ms)


@dataclass(frozen=True, slots=True)
class Opened:
    """An auction was opened. ``auction`` is a fresh snapshot on every access."""

    text: str
    at: _AuctionAt = field(repr=False)

    @property
    def auction(self) -> Auction:
        """The auction as it was right after this event (a copy)."""
        return self.at.auction()


@dataclass(frozen=True, slots=True)
class BidAccepted:
    """A seller accepted a bid. ``auction`` is a fresh snapshot on every access."""

    bid: AcceptedBid
    text: str
    at: _AuctionAt = field(repr=False)

    @property
    def auction(self) -> Auction:
        """The auction as it was right after this event (a copy)."""
        return self.at.auction()


@dataclass(frozen=True, slots=True)
class Closed:
    """A seller closed an auction; ``winner`` is None when there were no bids."""

    winner: AcceptedBid | None
    text: str
    at: _AuctionAt = field(repr=False)

    @property
    def auction(self) -> Auction:
        """The auction as it was right after this event (a copy)."""
        return self.at.auction()


Notification = Opened | BidAccepted | Closed
_NoteT = TypeVar("_NoteT", bound=Opened | BidAccepted | Closed)


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


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event that the ledger applied: what the node persists and relays.

    ``signed`` is the object given to :meth:`Ledger.apply`, so ``signed.event`` holds
    the exact bytes that were verified.
    """

    author: bytes
    seq: int
    signed: SignedEvent


@dataclass(slots=True)
class ApplyResult:
    """What one :meth:`Ledger.apply` call did.

    Attributes:
        applied: Events applied by this call, in order: the given one and any held
            events it released. Persist exactly these.
        notifications: One per applied event, in the same order.
        held: The event is valid so far but waits behind a gap in its author's log.
        duplicate: The event was already applied (or already held); nothing changed.
        rejection: Why the given event was refused; None if it was not.
    """

    applied: list[LoggedEvent] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    held: bool = False
    duplicate: bool = False
    rejection: Rejection | None = None


# ====================================================================== internals


@dataclass(frozen=True, slots=True)
class _OpenOk:
    item: str
    start: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class _AcceptOk:
    key: AuctionKey
    bid: BidFields
    amount: Decimal


@dataclass(frozen=True, slots=True)
class _CloseOk:
    key: AuctionKey


_Body = _OpenOk | _AcceptOk | _CloseOk


@dataclass(eq=False, slots=True)
class DecodedEvent:
    """A received ``SignedEvent`` decoded once (:func:`decode_signed`).

    What the duplicate check, the signature checks and :meth:`Ledger.apply_decoded`
    need, so none of them decodes or hashes the bytes again. The checks that need no
    ledger state (:meth:`body`) run on first use, so a known duplicate skips them.

    Attributes:
        signed: The event as received; ``signed.event`` are the decoded bytes.
        fields: The decoded ``Event`` fields (author id and seq already range-checked).
        digest: sha256 of ``signed.event``.
    """

    signed: SignedEvent
    fields: EventFields
    digest: bytes
    _body: _Body | Rejection | None = None

    def body(self) -> _Body | Rejection:
        """The validated body, or why it is refused (shape and values, no state)."""
        body = self._body
        if body is None:
            body = self._body = _static(self.fields)
        return body


@dataclass(eq=False, slots=True)
class _Log:
    """One author's applied log: the sha256 of every event (index seq - 1)."""

    hashes: list[bytes] = field(default_factory=list)
    name: str = ""
    held: dict[int, DecodedEvent] = field(default_factory=dict)


def _reject(code: RejectCode, reason: str) -> ApplyResult:
    return ApplyResult(rejection=Rejection(code, reason))


def _short(node_id: bytes) -> str:
    return node_id.hex()[:8]


# ====================================================================== ledger


class Ledger:
    """All logs a node knows, and the auctions they describe. Pure: no I/O.

    Feed it with :meth:`apply`; ask it with :meth:`auction`, :meth:`auctions`,
    :meth:`resolve`, :meth:`heads`; check requests before authoring an event with
    :meth:`check_open`, :meth:`check_bid`, :meth:`check_close`, then build the event
    with :meth:`next_event`.
    """

    def __init__(self) -> None:
        self._logs: dict[bytes, _Log] = {}
        self._auctions: dict[AuctionKey, Auction] = {}
        self._nonces: dict[AuctionKey, set[tuple[bytes, int]]] = {}
        self._bidder_names: dict[bytes, str] = {}
        self._forks: set[tuple[bytes, int]] = set()
        self._count = 0
        self._held_count = 0
        self._held_bytes = 0
        self._dropped = 0

    # ------------------------------------------------------------------ queries

    @property
    def event_count(self) -> int:
        """How many events are applied (held ones not included)."""
        return self._count

    @property
    def held_count(self) -> int:
        """How many events wait behind gaps."""
        return self._held_count

    @property
    def dropped_count(self) -> int:
        """Held events dropped on release because they broke a rule."""
        return self._dropped

    def heads(self) -> dict[bytes, int]:
        """Author -> highest applied seq (authors with at least one applied event)."""
        return {author: len(log.hashes) for author, log in self._logs.items() if log.hashes}

    def is_applied(self, event: SignedEvent | DecodedEvent) -> bool:
        """Whether these exact event bytes are already applied (a duplicate).

        Cheap next to a signature check: callers skip known events before
        verifying a batch, since a node often hears one event from several peers.
        Pass the :class:`DecodedEvent` when there is one: a ``SignedEvent`` is
        decoded here (and that work is thrown away).
        """
        if type(event) is not DecodedEvent:
            assert isinstance(event, SignedEvent)
            decoded = decode_signed(event)
            if isinstance(decoded, Rejection):
                return False
            event = decoded
        log = self._logs.get(event.fields.author)
        seq = event.fields.seq
        return (log is not None and seq <= len(log.hashes)
                and log.hashes[seq - 1] == event.digest)

    def head_hash(self, author: bytes) -> bytes:
        """sha256 of the author's last applied event bytes; empty if none."""
        log = self._logs.get(author)
        return log.hashes[-1] if log is not None and log.hashes else b""

    def forks(self) -> list[tuple[bytes, int]]:
        """Every ``(author, seq)`` for which two different signed events were seen."""
        return sorted(self._forks)

    def names(self) -> dict[bytes, str]:
        """Node id -> display name, for authors and bidders seen.

        An author's name is the one in its latest applied event; a bidder who authored
        nothing is named by its latest accepted bid (which may depend on arrival order).
        """
        names = dict(self._bidder_names)
        names.update((a, log.name) for a, log in self._logs.items() if log.hashes)
        return names

    def auction(self, key: AuctionKey) -> Auction | None:
        """The live auction with this id, or None."""
        return self._auctions.get(key)

    def auctions(self, include_closed: bool = False) -> list[Auction]:
        """The live auctions, oldest first (by open time, then id)."""
        found = (a for a in self._auctions.values() if include_closed or not a.closed)
        return sorted(found, key=lambda a: (a.opened_ms, a.key))

    def resolve(self, text: str) -> AuctionKey | Rejection:
        """Find the auction a user means.

        Accepts the full id (``"<hex>:<seq>"``), a unique prefix of it, or the label
        ``"SELLER->ITEM"`` (``"Client#1->Pic#1"``) when only one auction has it.

        Returns:
            The key, or ``AUCTION_NOT_FOUND`` / ``AMBIGUOUS_AUCTION`` (listing the
            candidates' ids and labels).
        """
        text = text.strip()
        if not text:
            return Rejection(RejectCode.AUCTION_NOT_FOUND, "no auction given")
        by_label = [a for a in self._auctions.values() if a.label == text]
        if len(by_label) == 1:
            return by_label[0].key
        if by_label:
            return _ambiguous(text, by_label)
        by_id = [a for a in self._auctions.values() if a.key.text.startswith(text.lower())]
        exact = [a for a in by_id if a.key.text == text.lower()]
        if exact:
            return exact[0].key
        if len(by_id) == 1:
            return by_id[0].key
        if by_id:
            return _ambiguous(text, by_id)
        return Rejection(RejectCode.AUCTION_NOT_FOUND, f"no auction matches {text!r}")

    # ------------------------------------------------------------------ checks before authoring

    def check_open(self, item: str, start_amount: str, currency: str) -> Rejection | None:
        """Why an ``Open`` with these fields would be refused, or None."""
        return _check_open(item, start_amount, currency)

    def check_bid(self, signed_bid: SignedBid, seller: bytes) -> Rejection | None:
        """What the seller's node checks before accepting a bid, or None if it may.

        Args:
            signed_bid: The bid as the bidder signed it.
            seller: This node's id: it only accepts bids on its own auctions.
        """
        try:
            bid = decode_bid(signed_bid.bid)
        except WireError as exc:
            return Rejection(RejectCode.BAD_EVENT, f"malformed bid: {exc}")
        if not verify(bid.bidder, signed_bid.bid, signed_bid.signature):
            return Rejection(RejectCode.BAD_SIGNATURE, "the bid is not signed by its bidder")
        why = check_name(bid.bidder_name)
        if why is not None:
            return Rejection(RejectCode.BAD_EVENT, f"bidder name: {why}")
        if not bid.has_auction:
            return Rejection(RejectCode.AUCTION_NOT_FOUND, "the bid names no auction")
        key = AuctionKey(bid.auction_author, bid.auction_seq)
        auction = self._auctions.get(key)
        if key.author != seller:
            where = auction.label if auction is not None else key.text
            return Rejection(RejectCode.NOT_SELLER, f"this node is not the seller of {where}")
        if auction is None:
            return Rejection(RejectCode.AUCTION_NOT_FOUND, key.text)
        return self._bid_rules(auction, bid, None)

    def check_close(self, key: AuctionKey, closer: bytes) -> Rejection | None:
        """Why ``closer`` may not close the auction ``key`` now, or None."""
        auction = self._auctions.get(key)
        if auction is None:
            return Rejection(RejectCode.AUCTION_NOT_FOUND, key.text)
        if auction.seller != closer:
            return Rejection(RejectCode.NOT_SELLER,
                             f"only the seller {auction.seller_name} can close {auction.label}")
        if auction.closed:
            return Rejection(RejectCode.AUCTION_CLOSED, f"{auction.label} is already closed")
        return None

    def next_event(self, author: bytes, author_name: str, time_ms: int, *,
                   open: Open | None = None, accept: Accept | None = None,
                   close: Close | None = None) -> Event:
        """The next event of ``author``'s log (seq = head + 1, prev = head hash).

        Exactly one of ``open``, ``accept`` and ``close`` must be given.
        """
        bodies = [b for b in (open, accept, close) if b is not None]
        if len(bodies) != 1:
            raise ValueError("next_event needs exactly one of open, accept, close")
        log = self._logs.get(author)
        seq = (len(log.hashes) if log is not None else 0) + 1
        return Event(author=author, seq=seq, prev=self.head_hash(author), time_ms=time_ms,
                     author_name=author_name, open=open, accept=accept, close=close)

    # ------------------------------------------------------------------ apply

    def apply(self, signed: SignedEvent, *, verified: bool = False) -> ApplyResult:
        """Apply one signed event (and any held events it releases).

        Never raises on bad input: anything wrong is a rejection in the result, and a
        rejected event changes nothing (except that a fork is recorded).

        Args:
            signed: The event as received: its ``event`` bytes are what is verified,
                decoded and hashed.
            verified: Skip the Ed25519 checks (event and bid). Only for events that
                were verified before, i.e. rows of the node's own store.
        """
        decoded = decode_signed(signed)
        if isinstance(decoded, Rejection):
            return ApplyResult(rejection=decoded)
        return self.apply_decoded(decoded, verified=verified)

    def apply_decoded(self, decoded: DecodedEvent, *, verified: bool = False) -> ApplyResult:
        """:meth:`apply` for an event already decoded by :func:`decode_signed`.

        Args:
            decoded: The decoded event.
            verified: Both signatures that :func:`signature_checks` lists for
                ``decoded`` were checked and are valid (or the event comes from the
                node's own store). False: this call checks them.
        """
        signed = decoded.signed
        data = signed.event
        fields = decoded.fields
        author = fields.author
        seq = fields.seq
        digest = decoded.digest
        log = self._logs.get(author)
        head = len(log.hashes) if log is not None else 0

        if log is not None and seq <= head:
            # Known slot: same bytes is a duplicate (nothing to verify: these exact
            # bytes were verified when first applied); other bytes may be a fork.
            if log.hashes[seq - 1] == digest:
                return ApplyResult(duplicate=True)
            if not verified and not verify(author, data, signed.signature):
                return _reject(RejectCode.BAD_SIGNATURE, "the event is not signed by its author")
            return self._fork(author, seq, fields.author_name)

        body = decoded.body()
        if isinstance(body, Rejection):
            return ApplyResult(rejection=body)
        if not verified:
            if not verify(author, data, signed.signature):
                return _reject(RejectCode.BAD_SIGNATURE, "the event is not signed by its author")
            if type(body) is _AcceptOk:
                accept = fields.body
                assert type(accept) is AcceptBody
                if not verify(body.bid.bidder, accept.bid, accept.signature):
                    return _reject(RejectCode.BAD_SIGNATURE,
                                   "the accepted bid is not signed by its bidder")

        if seq > head + 1:
            return self._hold(log, author, decoded, len(data))

        if log is None:
            log = self._logs[author] = _Log()
        result = ApplyResult()
        rejection = self._apply_one(log, decoded, body, result)
        if rejection is not None:
            result.rejection = rejection
            return result
        if log.held:
            self._release(log, result)
        return result

    # ------------------------------------------------------------------ apply helpers

    def _apply_one(self, log: _Log, decoded: DecodedEvent, body: _Body,
                   result: ApplyResult) -> Rejection | None:
        """Apply the event at head + 1 of ``log``: chain and stateful rules, then state."""
        fields = decoded.fields
        expected = log.hashes[-1] if log.hashes else b""
        if fields.prev != expected:
            return Rejection(RejectCode.BAD_EVENT,
                             f"prev of seq {fields.seq} is not the hash of seq {fields.seq - 1}")
        author = fields.author
        name = fields.author_name
        note: Notification
        if type(body) is _AcceptOk:
            auction = self._auctions.get(body.key)
            if auction is None:
                return Rejection(RejectCode.AUCTION_NOT_FOUND, body.key.text)
            bid = body.bid
            rejection = self._bid_rules(auction, bid, body.amount)
            if rejection is not None:
                return rejection
            accepted = AcceptedBid(bid.bidder, bid.bidder_name, body.amount, auction.currency,
                                   fields.time_ms)
            auction.bids.append(accepted)
            self._nonces.setdefault(body.key, set()).add((bid.bidder, bid.nonce))
            self._bidder_names[bid.bidder] = bid.bidder_name
            note = BidAccepted(accepted, f"{bid.bidder_name} bid {format_amount(body.amount)}"
                               f" {auction.currency} on {auction.label}", _AuctionAt.of(auction))
        elif type(body) is _OpenOk:
            key = AuctionKey(author, fields.seq)
            auction = Auction(key, name, body.item, body.start, body.currency, fields.time_ms)
            self._auctions[key] = auction
            note = Opened(f"{name} opened {body.item} at {format_amount(body.start)}"
                          f" {body.currency}", _AuctionAt.of(auction))
        else:
            assert isinstance(body, _CloseOk)
            auction = self._auctions.get(body.key)
            if auction is None:
                return Rejection(RejectCode.AUCTION_NOT_FOUND, body.key.text)
            if auction.closed:
                return Rejection(RejectCode.AUCTION_CLOSED, f"{auction.label} is already closed")
            auction.closed = True
            auction.closed_ms = fields.time_ms
            winner = auction.best
            if winner is None:
                text = f"{auction.label} closed with no bids"
            else:
                # "Client#2 -> 80 USDt" is the reference scenario's exact notification.
                text = (f"{auction.label} closed: {winner.bidder_name} ->"
                        f" {format_amount(winner.amount)} {winner.currency}")
            note = Closed(winner, text, _AuctionAt.of(auction))
        log.hashes.append(decoded.digest)
        log.name = name
        self._count += 1
        result.applied.append(LoggedEvent(author, fields.seq, decoded.signed))
        result.notifications.append(note)
        return None

    def _bid_rules(self, auction: Auction, bid: BidFields,
                   amount: Decimal | None) -> Rejection | None:
        """The rules of DESIGN.md section 5 for one bid on ``auction``.

        ``amount`` is the already parsed ``bid.amount`` (None: parse it here).
        """
        if auction.closed:
            return Rejection(RejectCode.AUCTION_CLOSED, f"{auction.label} is closed")
        if bid.bidder == auction.seller:
            return Rejection(RejectCode.SELF_BID,
                             f"{auction.seller_name} cannot bid on its own auction")
        if bid.currency != auction.currency:
            return Rejection(RejectCode.CURRENCY_MISMATCH,
                             f"bid in {bid.currency!r}, {auction.label} is in {auction.currency}")
        if amount is None:
            parsed = parse_amount(bid.amount)
            if isinstance(parsed, Rejection):
                return parsed
            amount = parsed
        nonces = self._nonces.get(auction.key)
        if nonces is not None and (bid.bidder, bid.nonce) in nonces:
            return Rejection(RejectCode.BAD_EVENT,
                             f"replayed bid: {bid.bidder_name}'s bid with nonce {bid.nonce}"
                             f" on {auction.label} was already accepted")
        best = auction.best
        if best is None:
            if amount < auction.start_amount:
                return Rejection(RejectCode.BID_TOO_LOW,
                                 f"start price is {format_amount(auction.start_amount)}"
                                 f" {auction.currency}")
        elif amount <= best.amount:
            return Rejection(RejectCode.BID_TOO_LOW,
                             f"best is {format_amount(best.amount)} {auction.currency}"
                             f" by {best.bidder_name}")
        return None

    def _fork(self, author: bytes, seq: int, name: str) -> ApplyResult:
        self._forks.add((author, seq))
        return _reject(RejectCode.BAD_EVENT,
                       f"fork: {name or _short(author)} signed two different events at seq"
                       f" {seq}; the first one is kept")

    def _hold(self, log: _Log | None, author: bytes, held: DecodedEvent, size: int
              ) -> ApplyResult:
        seq = held.fields.seq
        if log is None:
            log = self._logs[author] = _Log()
        existing = log.held.get(seq)
        if existing is not None:
            if existing.digest == held.digest:
                return ApplyResult(held=True, duplicate=True)
            return self._fork(author, seq, held.fields.author_name)
        if (len(log.held) >= MAX_HELD_PER_AUTHOR or self._held_count >= MAX_HELD_TOTAL
                or self._held_bytes + size > MAX_HELD_BYTES):
            return _reject(RejectCode.BAD_EVENT,
                           f"too many events waiting behind gaps; seq {seq} of"
                           f" {held.fields.author_name or _short(author)} not kept")
        log.held[seq] = held
        self._held_count += 1
        self._held_bytes += size
        return ApplyResult(held=True)

    def _release(self, log: _Log, result: ApplyResult) -> None:
        """Apply held events that now follow the head, until the next gap."""
        while True:
            held = log.held.pop(len(log.hashes) + 1, None)
            if held is None:
                return
            self._held_count -= 1
            self._held_bytes -= len(held.signed.event)
            body = held.body()
            assert not isinstance(body, Rejection)  # checked before it was held
            if self._apply_one(log, held, body, result) is not None:
                self._dropped += 1  # broke a rule: refused, as it would have been in order
                return


def decode_signed(signed: SignedEvent) -> DecodedEvent | Rejection:
    """Decode and hash a received ``SignedEvent`` once, or say why it is malformed.

    Pure and thread-safe; never raises on bad input (the rejection is ``BAD_EVENT``).
    """
    data = signed.event
    if type(data) is not bytes:
        return Rejection(RejectCode.BAD_EVENT, "the event is not bytes")
    if len(data) > MAX_EVENT_BYTES:
        return Rejection(RejectCode.BAD_EVENT,
                         f"event of {len(data)} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        fields = decode_event(data)
    except WireError as exc:
        return Rejection(RejectCode.BAD_EVENT, f"malformed event: {exc}")
    author = fields.author
    if len(author) != NODE_ID_BYTES:
        return Rejection(RejectCode.BAD_EVENT,
                         f"author id has {len(author)} bytes, expected {NODE_ID_BYTES}")
    if not 1 <= fields.seq <= MAX_SEQ:
        return Rejection(RejectCode.BAD_EVENT, f"seq {fields.seq} is out of range")
    return DecodedEvent(signed, fields, hashlib.sha256(data).digest())


def _check_open(item: str, start_amount: str, currency: str) -> Rejection | None:
    rejection = check_item(item)
    if rejection is not None:
        return rejection
    amount = parse_amount(start_amount)
    if isinstance(amount, Rejection):
        return amount
    return check_currency(currency)


def _static(fields: EventFields) -> _Body | Rejection:
    """The checks that need no state: shape of the body and its values."""
    why = check_name(fields.author_name)
    if why is not None:
        return Rejection(RejectCode.BAD_EVENT, f"author name: {why}")
    body = fields.body
    if type(body) is AcceptBody:
        try:
            bid = decode_bid(body.bid)
        except WireError as exc:
            return Rejection(RejectCode.BAD_EVENT, f"malformed bid: {exc}")
        if len(bid.bidder) != NODE_ID_BYTES:
            return Rejection(RejectCode.BAD_SIGNATURE, "the bidder id is not 32 bytes")
        why = check_name(bid.bidder_name)
        if why is not None:
            return Rejection(RejectCode.BAD_EVENT, f"bidder name: {why}")
        if not bid.has_auction:
            return Rejection(RejectCode.AUCTION_NOT_FOUND, "the bid names no auction")
        if bid.auction_author != fields.author:
            return Rejection(RejectCode.NOT_SELLER,
                             "an Accept for an auction in another seller's log")
        amount = parse_amount(bid.amount)
        if isinstance(amount, Rejection):
            return amount
        return _AcceptOk(AuctionKey(bid.auction_author, bid.auction_seq), bid, amount)
    if type(body) is OpenBody:
        rejection = _check_open(body.item, body.start_amount, body.currency)
        if rejection is not None:
            return rejection
        start = parse_amount(body.start_amount)
        assert isinstance(start, Decimal)
        return _OpenOk(body.item, start, body.currency)
    if type(body) is CloseBody:
        if not body.present:
            return Rejection(RejectCode.BAD_EVENT, "a Close that names no auction")
        if body.author != fields.author:
            return Rejection(RejectCode.NOT_SELLER,
                             "a Close for an auction in another seller's log")
        return _CloseOk(AuctionKey(body.author, body.seq))
    return Rejection(RejectCode.BAD_EVENT, "the event has no body (open, accept or close)")


def _ambiguous(text: str, candidates: Iterable[Auction]) -> Rejection:
    found = sorted(candidates, key=lambda a: (a.opened_ms, a.key))
    listed = ", ".join(f"{a.key.text} ({a.label}, {'closed' if a.closed else 'open'})"
                       for a in found[:_AMBIGUOUS_LISTED])
    more = f" and {len(found) - _AMBIGUOUS_LISTED} more" if len(found) > _AMBIGUOUS_LISTED else ""
    return Rejection(RejectCode.AMBIGUOUS_AUCTION,
                     f"{text!r} matches {len(found)} auctions: {listed}{more}")


# ====================================================================== signing


#: One Ed25519 check: (public key, signed bytes, signature).
SignatureCheck = tuple[bytes, bytes, bytes]


def signature_checks(decoded: DecodedEvent) -> list[SignatureCheck]:
    """The Ed25519 checks :meth:`Ledger.apply_decoded` makes for ``decoded``.

    The author's over the event bytes, and for an ``Accept`` the bidder's over the
    bid bytes. If all of them hold, the event may be applied with ``verified=True``.
    A body that fails the stateless checks needs only the author's (it is refused
    anyway, or recorded as a fork).
    """
    fields = decoded.fields
    checks = [(fields.author, decoded.signed.event, decoded.signed.signature)]
    body = decoded.body()
    if type(body) is _AcceptOk:
        accept = fields.body
        assert type(accept) is AcceptBody
        checks.append((body.bid.bidder, accept.bid, accept.signature))
    return checks


def checks_pass(checks: Iterable[SignatureCheck]) -> bool:
    """Whether every check holds. Pure and thread-safe (PyNaCl releases the GIL)."""
    return all(verify(key, data, signature) for key, data, signature in checks)


def signatures_valid(event: SignedEvent | DecodedEvent) -> bool:
    """Both Ed25519 checks :meth:`Ledger.apply` makes: the author's, and the bidder's
    inside an ``Accept``.

    Pure and thread-safe, so a batch can be checked on worker threads (PyNaCl
    releases the GIL) and then applied with ``verified=True``. False for anything
    malformed; ``apply`` without ``verified`` then says exactly what is wrong.
    """
    if type(event) is not DecodedEvent:
        assert isinstance(event, SignedEvent)
        decoded = decode_signed(event)
        if isinstance(decoded, Rejection):
            return False
        event = decoded
    if isinstance(event.body(), Rejection):
        return False
    return checks_pass(signature_checks(event))


def sign_event(identity: Signer, event: Event) -> SignedEvent:
    """Serialize ``event`` once and sign those bytes with ``identity``."""
    data = encode_event(event)
    return SignedEvent(event=data, signature=identity.sign(data))


def make_signed_bid(identity: Signer, key: AuctionKey, amount: str, currency: str, nonce: int,
                    time_ms: int) -> SignedBid:
    """A bid by ``identity`` on ``key``, signed by it (bidder and name from the identity)."""
    data = encode_bid(Bid(auction=key.message(), bidder=identity.node_id,
                          bidder_name=identity.name, amount=amount, currency=currency,
                          nonce=nonce, time_ms=time_ms))
    return SignedBid(bid=data, signature=identity.sign(data))
