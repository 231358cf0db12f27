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
later bid > the best (by at least the minimum increment, if the Open set one); the
currency must match; the seller cannot bid on its own auction; closed auctions take
no bids; only the seller closes. A bid carries the
bidder's own Ed25519 signature, checked by the seller before accepting
(:meth:`Ledger.check_bid`) and again by every node that applies the ``Accept``, so a
seller cannot put words in a bidder's mouth.

Time (issue 14): an Open may announce an end, an anti-sniping window W and a
reserve. The current end is derived from the Open and the Accepts' own stamps alone
(an Accept stamped within W of the end moves it to that stamp + W), so every node
derives the same end in any interleaving. An Accept stamped at or after the current
end is a broken rule (``AUCTION_ENDED``) everywhere, and within a timed auction an
Accept or Close may not be stamped before its author's previous event, so a seller
cannot slip a bid in late by stamping it back once it has logged anything later.
Time only ever comes in as a value: event stamps, or the ``now`` a caller passes.

Hot path: the signed bytes are decoded and hashed once, into a
:class:`peer.core.signed_events.DecodedEvent` (:func:`peer.core.signed_events.decode_signed`),
which the duplicate check (:meth:`Ledger.is_applied`), the signature checks on
worker threads (:func:`peer.core.signed_events.signature_checks`) and
:meth:`Ledger.apply_decoded` all share; nothing is re-serialized. The auctions and
notifications the ledger hands out are the values of :mod:`peer.core.auctions`.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from peer.core.auctions import (
    AcceptedBid,
    Auction,
    AuctionAt,
    AuctionKey,
    BidAccepted,
    Closed,
    Notification,
    Opened,
)
from peer.core.end_queue import EndQueue
from peer.core.identity import verify
from peer.core.rules import Rejection, format_amount, format_duration, format_time, parse_amount
from peer.core.sealed_reserve import Reveal, verify_reveal
from peer.core.signed_events import (
    CheckedAccept,
    CheckedBody,
    CheckedClose,
    CheckedOpen,
    DecodedEvent,
    as_decoded,
    check_bid_fields,
    check_open_fields,
    check_terms,
    decode_signed,
)
from peer.core.wire import AcceptBody, BidFields, WireError, decode_bid
from peer.gen.auction.v1 import (
    Accept,
    Close,
    Event,
    Open,
    RejectCode,
    SignedBid,
    SignedEvent,
)

__all__ = [
    "MAX_HELD_BYTES",
    "MAX_HELD_PER_AUTHOR",
    "MAX_HELD_TOTAL",
    "ApplyResult",
    "Ledger",
    "LoggedEvent",
]

#: Events waiting behind a gap, per author and in total (count and bytes): bounded
#: memory whatever peers send; beyond it they are refused, and sync fetches them again
#: once the gap is filled.
MAX_HELD_PER_AUTHOR: Final = 1024
MAX_HELD_TOTAL: Final = 8192
MAX_HELD_BYTES: Final = 16 * 1024 * 1024
_AMBIGUOUS_LISTED: Final = 10  # candidates quoted in an AMBIGUOUS_AUCTION reason
# `list`'s short auction id: a prefix of the seller's id (shorter than the 64 hex
# digits of a full one), ':' and the auction's seq.
_SHORT_ID: Final = re.compile(r"([0-9a-f]{1,63}):([0-9]{1,19})")


# ====================================================================== results


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


@dataclass(eq=False, slots=True)
class _Log:
    """One author's applied log: the sha256 of every event (index seq - 1)."""

    hashes: list[bytes] = field(default_factory=list)
    name: str = ""
    held: dict[int, DecodedEvent] = field(default_factory=dict)
    last_time_ms: int | None = None  # the stamp of the last applied event
    # The stamp of every applied event (index seq - 1), 8 bytes each: what undo needs
    # to give last_time_ms back.
    times: array[int] = field(default_factory=lambda: array("q"))
    # (seq, the name before it) for every event that changed the name: what undo
    # needs to restore it, and a name rarely changes.
    renames: list[tuple[int, str]] = field(default_factory=list)


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
        self._timed_open = EndQueue()  # open auctions that announced an end, by end
        self._nonces: dict[AuctionKey, set[tuple[bytes, int]]] = {}
        self._bidder_names: dict[bytes, str] = {}
        # Every node id seen under each display name (authors and bidders): where two
        # nodes share a name, notification texts add a short id to tell them apart.
        self._ids_by_name: dict[str, set[bytes]] = {}
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
        decoded = as_decoded(event)
        if isinstance(decoded, Rejection):
            return False
        log = self._logs.get(decoded.fields.author)
        seq = decoded.fields.seq
        return (log is not None and seq <= len(log.hashes)
                and log.hashes[seq - 1] == decoded.digest)

    def stamp(self, author: bytes, now_ms: int) -> int:
        """The time ``author`` should stamp its next event with: ``now_ms``, but never
        before its previous event (a clock that stepped back must not make the next
        Accept of a timed auction break the rule that its stamps do not go back)."""
        log = self._logs.get(author)
        last = log.last_time_ms if log is not None else None
        return now_ms if last is None else max(now_ms, last)

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

    def timed_open_auctions(self) -> list[Auction]:
        """The open auctions that announced an end, soonest current end first.

        Sorts them all: for the deadline loop, :meth:`timed_open_due` is the cheap form.
        """
        return [self._auctions[key] for key in self._timed_open.in_order()]

    def timed_open_due(self, now_ms: int) -> tuple[list[Auction], int | None]:
        """The open timed auctions whose current end is at or before ``now_ms``, soonest
        end first, and the soonest current end after ``now_ms`` (None: none).

        What :meth:`timed_open_auctions` says about ``now_ms``, in O(log n) for n open
        timed auctions (plus O(log n) for each one past its end), not a sort of all.
        """
        keys, following = self._timed_open.due(now_ms)
        return [self._auctions[key] for key in keys], following

    def is_timed_open(self, key: AuctionKey) -> bool:
        """Whether ``key`` is an open auction that announced an end."""
        return key in self._timed_open

    @property
    def has_timed_open(self) -> bool:
        """Whether any open auction announced an end (cheap: no list is built)."""
        return bool(self._timed_open)

    def last_stamp(self, author: bytes) -> int | None:
        """The stamp of ``author``'s last applied event, if any."""
        log = self._logs.get(author)
        return log.last_time_ms if log is not None else None

    def auctions(self, include_closed: bool = False) -> list[Auction]:
        """The live auctions, oldest first (by open time, then id)."""
        found = (a for a in self._auctions.values() if include_closed or not a.closed)
        return sorted(found, key=lambda a: (a.opened_ms, a.key))

    def resolve(self, text: str) -> AuctionKey | Rejection:
        """Find the auction a user means.

        Accepts the full id (``"<hex>:<seq>"``), a unique prefix of it, the short id
        `list` shows (``"<seller id prefix>:<seq>"``, e.g. ``"ab12cd34:1"``) when one
        auction matches it, or the label ``"SELLER->ITEM"`` (``"Client#1->Pic#1"``)
        when only one auction has it.

        Returns:
            The key, or ``AUCTION_NOT_FOUND`` / ``AMBIGUOUS_AUCTION`` (listing the
            candidates' ids and labels).
        """
        text = text.strip()
        if not text:
            return Rejection(RejectCode.AUCTION_NOT_FOUND, "no auction given")
        # A full id (what every client passes once it knows the auction) is one dict
        # lookup: the scans below cost ~0.4 us per auction held, on every bid.
        key = _full_id(text.lower())
        if key is not None and key in self._auctions:
            return key  # a label always holds "->", so it never equals an id
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
        short = _SHORT_ID.fullmatch(text.lower())
        if short is not None:
            # `list`'s short id: a prefix of the seller's id and the exact seq.
            prefix, seq = short.group(1), int(short.group(2))
            by_short = [a for a in self._auctions.values()
                        if a.key.seq == seq and a.key.author.hex().startswith(prefix)]
            if len(by_short) == 1:
                return by_short[0].key
            if by_short:
                return _ambiguous(text, by_short)
        return Rejection(RejectCode.AUCTION_NOT_FOUND, f"no auction matches {text!r}")

    # ------------------------------------------------------------------ checks before authoring

    def check_open(self, item: str, start_amount: str, currency: str, *, time_ms: int = 0,
                   ends_at_ms: int = 0, extend_ms: int = 0, min_increment: str = "",
                   reserve: str = "", sealed_reserve: bytes = b"", sealed_box: bytes = b""
                   ) -> Rejection | None:
        """Why an ``Open`` with these fields, stamped ``time_ms``, would be refused, or None."""
        rejection = check_open_fields(item, start_amount, currency)
        if rejection is not None:
            return rejection
        terms = check_terms(time_ms, ends_at_ms, extend_ms, min_increment, reserve,
                            sealed_reserve, sealed_box)
        return terms if isinstance(terms, Rejection) else None

    def check_bid(self, signed_bid: SignedBid, seller: bytes, time_ms: int | None = None
                  ) -> Rejection | None:
        """What the seller's node checks before accepting a bid, or None if it may.

        Args:
            signed_bid: The bid as the bidder signed it.
            seller: This node's id: it only accepts bids on its own auctions.
            time_ms: The stamp the ``Accept`` would carry (:meth:`stamp`); None: the
                seller's last stamp (the earliest the Accept could carry).
        """
        try:
            bid = decode_bid(signed_bid.bid)
        except WireError as exc:
            return Rejection(RejectCode.BAD_EVENT, f"malformed bid: {exc}")
        if not verify(bid.bidder, signed_bid.bid, signed_bid.signature):
            return Rejection(RejectCode.BAD_SIGNATURE, "the bid is not signed by its bidder")
        rejection = check_bid_fields(bid)
        if rejection is not None:
            return rejection
        key = AuctionKey(bid.auction_author, bid.auction_seq)
        auction = self._auctions.get(key)
        if key.author != seller:
            where = auction.label if auction is not None else key.text
            return Rejection(RejectCode.NOT_SELLER, f"this node is not the seller of {where}")
        if auction is None:
            return Rejection(RejectCode.AUCTION_NOT_FOUND, key.text)
        log = self._logs.get(seller)
        last = log.last_time_ms if log is not None else None
        stamp = time_ms if time_ms is not None else (last or 0)
        return self._bid_rules(auction, bid, None, stamp, last)

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
            if type(body) is CheckedAccept:
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

    def undo(self, event: LoggedEvent) -> None:
        """Take back ``event``, which must be the newest applied event of its author.

        For a node whose commit of applied events failed: undoing them newest first
        leaves the state exactly as if they had never been applied, except that a
        bidder's display name learnt from an undone bid stays (it is the bidder's own
        signed name) and recorded forks stay (two signed events at one seq are proof
        whether or not either was stored). Events held behind the undone ones stay
        held.

        Raises:
            ValueError: ``event`` is not its author's newest applied event.
        """
        decoded = decode_signed(event.signed)
        log = self._logs.get(event.author)
        if (isinstance(decoded, Rejection) or log is None or len(log.hashes) != event.seq
                or log.hashes[-1] != decoded.digest):
            raise ValueError(f"seq {event.seq} of {_short(event.author)} is not its author's"
                             f" newest applied event")
        body = decoded.body()
        assert not isinstance(body, Rejection)  # it was applied, so its body is sound
        if type(body) is CheckedAccept:
            auction = self._auctions[body.key]
            auction.bids.pop()  # bids on an auction are applied in its seller's seq order
            window = auction.terms.extend_ms
            if window:
                # Each bid moved the end to max(end, its stamp + W): the end without
                # this bid is that maximum over the bids that remain.
                auction.ends_ms = max([auction.terms.ends_at_ms,
                                       *(b.time_ms + window for b in auction.bids)])
                self._timed_open.move(body.key, auction.ends_ms)
            nonces = self._nonces[body.key]
            nonces.discard((body.bid.bidder, body.bid.nonce))
            if not nonces:
                del self._nonces[body.key]
        elif type(body) is CheckedOpen:
            key = AuctionKey(event.author, event.seq)
            del self._auctions[key]
            self._nonces.pop(key, None)
            self._timed_open.discard(key)
        else:
            assert isinstance(body, CheckedClose)
            auction = self._auctions[body.key]
            auction.closed = False
            auction.closed_ms = None
            auction.revealed_reserve = None
            if auction.terms.timed:
                self._timed_open.set(body.key, auction.ends_ms)
        log.hashes.pop()
        log.times.pop()
        log.last_time_ms = log.times[-1] if log.times else None
        if log.renames and log.renames[-1][0] == event.seq:
            log.name = log.renames.pop()[1]
        self._count -= 1

    # ------------------------------------------------------------------ apply helpers

    def _known_as(self, node_id: bytes, name: str) -> None:
        self._ids_by_name.setdefault(name, set()).add(node_id)

    def _who(self, node_id: bytes, name: str) -> str:
        """``name``, with a short id when another node has been seen under it too."""
        ids = self._ids_by_name.get(name)
        return f"{name} ({_short(node_id)})" if ids is not None and len(ids) > 1 else name

    def _label(self, auction: Auction) -> str:
        return f"{self._who(auction.key.author, auction.seller_name)}->{auction.item}"

    def _apply_one(self, log: _Log, decoded: DecodedEvent, body: CheckedBody,
                   result: ApplyResult) -> Rejection | None:
        """Apply the event at head + 1 of ``log``: chain and stateful rules, then state."""
        fields = decoded.fields
        expected = log.hashes[-1] if log.hashes else b""
        if fields.prev != expected:
            return Rejection(RejectCode.BAD_EVENT,
                             f"prev of seq {fields.seq} is not the hash of seq {fields.seq - 1}")
        author = fields.author
        name = fields.author_name
        if log.name != name:
            self._known_as(author, name)
        note: Notification
        if type(body) is CheckedAccept:
            auction = self._auctions.get(body.key)
            if auction is None:
                return Rejection(RejectCode.AUCTION_NOT_FOUND, body.key.text)
            bid = body.bid
            rejection = self._bid_rules(auction, bid, body.amount, fields.time_ms,
                                        log.last_time_ms)
            if rejection is not None:
                return rejection
            accepted = AcceptedBid(bid.bidder, bid.bidder_name, body.amount, auction.currency,
                                   fields.time_ms)
            auction.bids.append(accepted)
            self._nonces.setdefault(body.key, set()).add((bid.bidder, bid.nonce))
            if self._bidder_names.get(bid.bidder) != bid.bidder_name:
                self._known_as(bid.bidder, bid.bidder_name)
            self._bidder_names[bid.bidder] = bid.bidder_name
            text = (f"{self._who(bid.bidder, bid.bidder_name)} bid "
                    f"{format_amount(body.amount)} {auction.currency} on {self._label(auction)}")
            extended_from = 0
            window = auction.terms.extend_ms
            if window and fields.time_ms + window > auction.ends_ms:
                # Anti-sniping: a bid in the last W of the end moves the end to its stamp
                # + W. Only the Accept's own stamp counts, so every node agrees.
                extended_from = auction.ends_ms
                auction.ends_ms = fields.time_ms + window
                self._timed_open.move(body.key, auction.ends_ms)
                text += (f"; end extended by {format_duration(auction.ends_ms - extended_from)}"
                         f" to {format_time(auction.ends_ms)}")
            note = BidAccepted(accepted, text, AuctionAt.of(auction), extended_from)
        elif type(body) is CheckedOpen:
            key = AuctionKey(author, fields.seq)
            terms = body.terms
            auction = Auction(key, name, body.item, body.start, body.currency, fields.time_ms,
                              terms=terms, ends_ms=terms.ends_at_ms)
            self._auctions[key] = auction
            if terms.timed:
                self._timed_open.set(key, auction.ends_ms)
            note = Opened(f"{self._who(author, name)} opened {body.item} at "
                          f"{format_amount(body.start)}"
                          f" {body.currency}{_terms_text(auction)}", AuctionAt.of(auction))
        else:
            assert isinstance(body, CheckedClose)
            auction = self._auctions.get(body.key)
            if auction is None:
                return Rejection(RejectCode.AUCTION_NOT_FOUND, body.key.text)
            if auction.closed:
                return Rejection(RejectCode.AUCTION_CLOSED, f"{auction.label} is already closed")
            rejection = _stamp_rule(auction, fields.time_ms, log.last_time_ms)
            if rejection is None:
                rejection = _reveal_rule(auction, body.reveal)
            if rejection is not None:
                return rejection
            if body.reveal is not None:
                auction.revealed_reserve = Decimal(body.reveal.reserve)
            auction.closed = True
            auction.closed_ms = fields.time_ms
            self._timed_open.discard(auction.key)
            note = Closed(auction.winner,
                          _closed_text(auction, self._label(auction), self._who),
                          AuctionAt.of(auction))
        log.hashes.append(decoded.digest)
        if name != log.name:
            log.renames.append((fields.seq, log.name))
            log.name = name
        log.last_time_ms = fields.time_ms
        log.times.append(fields.time_ms)
        self._count += 1
        result.applied.append(LoggedEvent(author, fields.seq, decoded.signed))
        result.notifications.append(note)
        return None

    def _bid_rules(self, auction: Auction, bid: BidFields, amount: Decimal | None,
                   time_ms: int, last_time_ms: int | None) -> Rejection | None:
        """The rules of DESIGN.md section 5 (and issue 14's times) for one bid on ``auction``.

        ``amount`` is the already parsed ``bid.amount`` (None: parse it here);
        ``time_ms`` the Accept's stamp, ``last_time_ms`` the seller's previous one.
        """
        if auction.closed:
            return Rejection(RejectCode.AUCTION_CLOSED, f"{auction.label} is closed")
        if auction.ends_ms and time_ms >= auction.ends_ms:
            return Rejection(RejectCode.AUCTION_ENDED,
                             f"{auction.label} ended at {format_time(auction.ends_ms)}")
        rejection = _stamp_rule(auction, time_ms, last_time_ms)
        if rejection is not None:
            return rejection
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
        elif amount <= best.amount or (auction.terms.min_increment is not None
                                       and amount < best.amount + auction.terms.min_increment):
            reason = (f"best is {format_amount(best.amount)} {auction.currency}"
                      f" by {best.bidder_name}")
            increment = auction.terms.min_increment
            if increment is not None:
                reason += (f"; the minimum increment is {format_amount(increment)}"
                           f" {auction.currency}, so at least"
                           f" {format_amount(best.amount + increment)} {auction.currency}")
            return Rejection(RejectCode.BID_TOO_LOW, reason)
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


def _stamp_rule(auction: Auction, time_ms: int, last_time_ms: int | None) -> Rejection | None:
    """In a timed auction, an Accept or Close may not be stamped before its author's
    previous event: once a seller has logged anything after the end, it cannot stamp a
    bid back to before it."""
    if auction.ends_ms and last_time_ms is not None and time_ms < last_time_ms:
        return Rejection(RejectCode.BAD_EVENT,
                         f"an event of timed auction {auction.label} is stamped {time_ms},"
                         f" before its seller's previous event ({last_time_ms})")
    return None


def _reveal_rule(auction: Auction, reveal: Reveal | None) -> Rejection | None:
    """A Close reveals the sealed reserve its Open committed to, and only then reveals."""
    sealed = auction.terms.sealed_reserve
    if not sealed:
        if reveal is None:
            return None
        return Rejection(RejectCode.BAD_EVENT,
                         f"the Close of {auction.label} reveals a reserve its Open did not seal")
    if reveal is None or not verify_reveal(sealed, reveal):
        return Rejection(RejectCode.BAD_EVENT,
                         f"the Close of {auction.label} does not reveal the sealed reserve"
                         " its Open committed to")
    return None


def _terms_text(auction: Auction) -> str:
    """The Open's terms as the tail of its notification, e.g. ", ends 2026-... UTC"."""
    terms = auction.terms
    text = ""
    if terms.ends_at_ms:
        text += f", ends {format_time(terms.ends_at_ms)}"
        if terms.extend_ms:
            text += f" (a bid in its last {format_duration(terms.extend_ms)} extends it)"
    if terms.min_increment is not None:
        text += f", min increment {format_amount(terms.min_increment)} {auction.currency}"
    if terms.reserve is not None:
        text += f", reserve {format_amount(terms.reserve)} {auction.currency}"
    if terms.sealed_reserve:
        text += ", sealed reserve"
    return text


def _closed_text(auction: Auction, label: str, who: Callable[[bytes, str], str]) -> str:
    """``"Client#1->Pic#1 closed: Client#2 -> 80 USDt"`` (the reference scenario's exact
    line); ``ended`` instead of ``closed`` when it closed at or after its end. ``label``
    and ``who`` name the seller and bidder (with a short id where names collide)."""
    verb = "ended" if auction.ended_by_time else "closed"
    best = auction.best
    if best is None:
        return f"{label} {verb} with no bids"
    bidder = who(best.bidder, best.bidder_name)
    if not auction.reserve_met:
        reserve = auction.reserve
        sealed = (f"sealed reserve {format_amount(reserve)} {best.currency} not met"
                  if auction.terms.sealed_reserve and reserve is not None
                  else "reserve not met")
        return (f"{label} {verb}: no sale ({sealed}; best"
                f" {format_amount(best.amount)} {best.currency} by {bidder})")
    return f"{label} {verb}: {bidder} -> {format_amount(best.amount)} {best.currency}"


def _ambiguous(text: str, candidates: Iterable[Auction]) -> Rejection:
    found = sorted(candidates, key=lambda a: (a.opened_ms, a.key))
    listed = ", ".join(f"{a.key.text} ({a.label}, {'closed' if a.closed else 'open'})"
                       for a in found[:_AMBIGUOUS_LISTED])
    more = f" and {len(found) - _AMBIGUOUS_LISTED} more" if len(found) > _AMBIGUOUS_LISTED else ""
    return Rejection(RejectCode.AMBIGUOUS_AUCTION,
                     f"{text!r} matches {len(found)} auctions: {listed}{more}")



def _full_id(text: str) -> AuctionKey | None:
    """The key whose ``text`` is exactly ``text`` (lower case), or None."""
    author_hex, sep, seq_text = text.rpartition(":")
    if not sep or not seq_text.isdigit():
        return None
    try:
        key = AuctionKey(bytes.fromhex(author_hex), int(seq_text))
    except ValueError:
        return None
    # fromhex skips spaces and int() takes "01": only the canonical spelling counts.
    return key if key.text == text else None
