"""Signed events on their own: decoding, the checks that need no ledger state, signing.

What can be said of one ``SignedEvent`` without knowing any other event, so it is
pure and thread-safe: :func:`decode_signed` decodes and hashes the bytes once
(with :mod:`peer.core.wire`, not betterproto2, which costs more than the signature
check) into a :class:`DecodedEvent`, whose :meth:`DecodedEvent.body` checks the
body's shape and values; :func:`signature_checks` lists the Ed25519 checks it
needs, which :func:`checks_pass` makes, on worker threads if the caller likes.
:func:`sign_event` and :func:`make_signed_bid` build what a node authors.

The rules that depend on earlier events (chain, auction state, bids) are
:class:`peer.core.ledger.Ledger`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Protocol

from peer.core.auctions import NO_TERMS, AuctionKey, Terms
from peer.core.envelopes import encode_bid, encode_event
from peer.core.identity import NODE_ID_BYTES, verify
from peer.core.rules import Rejection, check_currency, check_item, check_name, parse_amount
from peer.core.sealed_reserve import BOX_BYTES, COMMITMENT_BYTES, KEY_BYTES, Reveal
from peer.core.wire import (
    AcceptBody,
    BidFields,
    CloseBody,
    EventFields,
    OpenBody,
    WireError,
    decode_bid,
    decode_event,
)
from peer.gen.auction.v1 import Bid, Event, RejectCode, SignedBid, SignedEvent

__all__ = [
    "MAX_DURATION_MS",
    "MAX_EVENT_BYTES",
    "MAX_EXTEND_MS",
    "CheckedAccept",
    "CheckedBody",
    "CheckedClose",
    "CheckedOpen",
    "DecodedEvent",
    "SignatureCheck",
    "Signer",
    "as_decoded",
    "check_bid_fields",
    "check_open_fields",
    "check_terms",
    "checks_pass",
    "decode_signed",
    "make_signed_bid",
    "sign_event",
    "signature_checks",
    "signatures_valid",
]

#: Larger events are refused unread; a real one is ~300 bytes.
MAX_EVENT_BYTES: Final = 64 * 1024
#: seq is uint64 on the wire but a signed 64-bit INTEGER in the store.
MAX_SEQ: Final = 2**63 - 1
#: The longest an auction may run from its Open to its announced end, and the longest
#: anti-sniping window: bounds that keep a typo (ms for s) from opening a century-long
#: auction, and keep every extension small next to the auction itself.
MAX_DURATION_MS: Final = 366 * 24 * 3600 * 1000
MAX_EXTEND_MS: Final = 24 * 3600 * 1000


class Signer(Protocol):
    """What signing needs of an identity (:class:`peer.core.identity.Identity` is one)."""

    @property
    def node_id(self) -> bytes: ...

    @property
    def name(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


# ====================================================================== decoding


@dataclass(frozen=True, slots=True)
class CheckedOpen:
    """An ``Open`` body that passed the stateless checks."""

    item: str
    start: Decimal
    currency: str
    terms: Terms = NO_TERMS


@dataclass(frozen=True, slots=True)
class CheckedAccept:
    """An ``Accept`` body that passed the stateless checks (bid decoded, amount parsed)."""

    key: AuctionKey
    bid: BidFields
    amount: Decimal


@dataclass(frozen=True, slots=True)
class CheckedClose:
    """A ``Close`` body that passed the stateless checks; ``reveal`` opens a sealed
    reserve (None: the Close reveals nothing)."""

    key: AuctionKey
    reveal: Reveal | None = None


CheckedBody = CheckedOpen | CheckedAccept | CheckedClose


@dataclass(eq=False, slots=True)
class DecodedEvent:
    """A received ``SignedEvent`` decoded once (:func:`decode_signed`).

    What the duplicate check, the signature checks and
    :meth:`peer.core.ledger.Ledger.apply_decoded` need, so none of them decodes or hashes
    the bytes again. The checks that need no ledger state (:meth:`body`) run on first
    use, so a known duplicate skips them.

    Attributes:
        signed: The event as received; ``signed.event`` are the decoded bytes.
        fields: The decoded ``Event`` fields (author id and seq already range-checked).
        digest: sha256 of ``signed.event``.
    """

    signed: SignedEvent
    fields: EventFields
    digest: bytes
    _body: CheckedBody | Rejection | None = None

    def body(self) -> CheckedBody | Rejection:
        """The validated body, or why it is refused (shape and values, no state)."""
        body = self._body
        if body is None:
            body = self._body = _static(self.fields)
        return body


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


def as_decoded(event: SignedEvent | DecodedEvent) -> DecodedEvent | Rejection:
    """``event`` itself if already decoded, else :func:`decode_signed` of it."""
    if type(event) is DecodedEvent:
        return event
    assert isinstance(event, SignedEvent)
    return decode_signed(event)


def check_open_fields(item: str, start_amount: str, currency: str) -> Rejection | None:
    """Why an ``Open`` with these fields would be refused, or None."""
    rejection = check_item(item)
    if rejection is not None:
        return rejection
    amount = parse_amount(start_amount)
    if isinstance(amount, Rejection):
        return amount
    return check_currency(currency)


def check_terms(open_ms: int, ends_at_ms: int, extend_ms: int, min_increment: str,
                reserve: str, sealed_reserve: bytes = b"", sealed_box: bytes = b""
                ) -> Terms | Rejection:
    """The terms of an ``Open`` stamped ``open_ms``, or a ``BAD_TERMS`` rejection.

    An end must lie after the Open and at most :data:`MAX_DURATION_MS` after it; an
    anti-sniping window needs an end and is at most :data:`MAX_EXTEND_MS`; the
    increment and the reserve are amounts like a price (or empty: none); a sealed
    reserve is a 32-byte commitment, never beside a public one.
    """
    if (ends_at_ms == 0 and extend_ms == 0 and not min_increment and not reserve
            and not sealed_reserve and not sealed_box):
        return NO_TERMS
    if sealed_reserve or sealed_box:
        if len(sealed_reserve) != COMMITMENT_BYTES or len(sealed_box) > BOX_BYTES:
            return Rejection(RejectCode.BAD_TERMS,
                             f"a sealed reserve is a {COMMITMENT_BYTES}-byte commitment with"
                             f" a box of at most {BOX_BYTES} bytes")
        if reserve:
            return Rejection(RejectCode.BAD_TERMS, "a reserve is either public or sealed")
    if ends_at_ms < 0 or (ends_at_ms and ends_at_ms <= open_ms):
        return Rejection(RejectCode.BAD_TERMS, "the end time is not after the open time")
    if ends_at_ms and ends_at_ms - open_ms > MAX_DURATION_MS:
        return Rejection(RejectCode.BAD_TERMS,
                         f"the end is more than {MAX_DURATION_MS // 86_400_000} days away")
    if not 0 <= extend_ms <= MAX_EXTEND_MS:
        return Rejection(RejectCode.BAD_TERMS,
                         f"the extension window must be 0 to {MAX_EXTEND_MS // 3_600_000} h")
    if extend_ms and not ends_at_ms:
        return Rejection(RejectCode.BAD_TERMS,
                         "an extension window needs an end time to extend")
    amounts: list[Decimal | None] = []
    for what, text in (("minimum increment", min_increment), ("reserve", reserve)):
        if not text:
            amounts.append(None)
            continue
        amount = parse_amount(text)
        if isinstance(amount, Rejection):
            return Rejection(RejectCode.BAD_TERMS, f"{what}: {amount.reason}")
        amounts.append(amount)
    return Terms(ends_at_ms, extend_ms, amounts[0], amounts[1], sealed_reserve, sealed_box)


def check_bid_fields(bid: BidFields) -> Rejection | None:
    """Why a decoded bid is refused for its own fields (bidder name, auction), or None."""
    why = check_name(bid.bidder_name)
    if why is not None:
        return Rejection(RejectCode.BAD_EVENT, f"bidder name: {why}")
    if not bid.has_auction:
        return Rejection(RejectCode.AUCTION_NOT_FOUND, "the bid names no auction")
    return None


def _static(fields: EventFields) -> CheckedBody | Rejection:
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
        rejection = check_bid_fields(bid)
        if rejection is not None:
            return rejection
        if bid.auction_author != fields.author:
            return Rejection(RejectCode.NOT_SELLER,
                             "an Accept for an auction in another seller's log")
        amount = parse_amount(bid.amount)
        if isinstance(amount, Rejection):
            return amount
        return CheckedAccept(AuctionKey(bid.auction_author, bid.auction_seq), bid, amount)
    if type(body) is OpenBody:
        rejection = check_open_fields(body.item, body.start_amount, body.currency)
        if rejection is not None:
            return rejection
        start = parse_amount(body.start_amount)
        assert isinstance(start, Decimal)
        terms = check_terms(fields.time_ms, body.ends_at_ms, body.extend_ms,
                            body.min_increment, body.reserve, body.sealed_reserve,
                            body.sealed_reserve_box)
        if isinstance(terms, Rejection):
            return terms
        return CheckedOpen(body.item, start, body.currency, terms)
    if type(body) is CloseBody:
        if not body.present:
            return Rejection(RejectCode.BAD_EVENT, "a Close that names no auction")
        if body.author != fields.author:
            return Rejection(RejectCode.NOT_SELLER,
                             "a Close for an auction in another seller's log")
        reveal = None
        if body.reserve or body.reserve_key:
            revealed = parse_amount(body.reserve)
            if isinstance(revealed, Rejection) or len(body.reserve_key) != KEY_BYTES:
                return Rejection(RejectCode.BAD_EVENT,
                                 "a Close whose reserve reveal is not an amount and a"
                                 f" {KEY_BYTES}-byte key")
            reveal = Reveal(body.reserve, body.reserve_key)
        return CheckedClose(AuctionKey(body.author, body.seq), reveal)
    return Rejection(RejectCode.BAD_EVENT, "the event has no body (open, accept or close)")


# ====================================================================== signing


#: One Ed25519 check: (public key, signed bytes, signature).
SignatureCheck = tuple[bytes, bytes, bytes]


def signature_checks(decoded: DecodedEvent) -> list[SignatureCheck]:
    """The Ed25519 checks :meth:`peer.core.ledger.Ledger.apply_decoded` makes for ``decoded``.

    The author's over the event bytes, and for an ``Accept`` the bidder's over the
    bid bytes. If all of them hold, the event may be applied with ``verified=True``.
    A body that fails the stateless checks needs only the author's (it is refused
    anyway, or recorded as a fork).
    """
    fields = decoded.fields
    checks = [(fields.author, decoded.signed.event, decoded.signed.signature)]
    body = decoded.body()
    if type(body) is CheckedAccept:
        accept = fields.body
        assert type(accept) is AcceptBody
        checks.append((body.bid.bidder, accept.bid, accept.signature))
    return checks


def checks_pass(checks: Iterable[SignatureCheck]) -> bool:
    """Whether every check holds. Pure and thread-safe (PyNaCl releases the GIL)."""
    return all(verify(key, data, signature) for key, data, signature in checks)


def signatures_valid(event: SignedEvent | DecodedEvent) -> bool:
    """Both Ed25519 checks :meth:`peer.core.ledger.Ledger.apply` makes: the author's, and
    the bidder's inside an ``Accept``.

    Pure and thread-safe, so a batch can be checked on worker threads (PyNaCl
    releases the GIL) and then applied with ``verified=True``. False for anything
    malformed; ``apply`` without ``verified`` then says exactly what is wrong.
    """
    decoded = as_decoded(event)
    if isinstance(decoded, Rejection) or isinstance(decoded.body(), Rejection):
        return False
    return checks_pass(signature_checks(decoded))


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
