"""peer.core.ledger: the reference scenario, each rule, forks, gaps, caps and resolve()."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from peer.core import ledger as ledger_module
from peer.core.auctions import AuctionKey, BidAccepted, Closed, Opened
from peer.core.identity import Identity
from peer.core.ledger import Ledger
from peer.core.rules import Rejection
from peer.core.signed_events import MAX_EVENT_BYTES, make_signed_bid, sign_event
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

T0 = 1_700_000_000_000
C1 = Identity.from_seed(b"\x01" * 32, "Client#1")
C2 = Identity.from_seed(b"\x02" * 32, "Client#2")
C3 = Identity.from_seed(b"\x03" * 32, "Client#3")


class Author:
    """Builds one author's signed log next to a ledger of its own (its node)."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.ledger = Ledger()
        self.log: list[SignedEvent] = []
        self.nonce = 0

    def event(self, *, open: Open | None = None, accept: Accept | None = None,
              close: Close | None = None) -> SignedEvent:
        ident = self.identity
        event = self.ledger.next_event(ident.node_id, ident.name, T0 + len(self.log),
                                       open=open, accept=accept, close=close)
        signed = sign_event(ident, event)
        result = self.ledger.apply(signed)
        assert result.rejection is None, result.rejection
        self.log.append(signed)
        return signed

    def open(self, item: str, start: str, currency: str = "USDt") -> AuctionKey:
        assert self.ledger.check_open(item, start, currency) is None
        self.event(open=Open(item=item, start_amount=start, currency=currency))
        return AuctionKey(self.identity.node_id, len(self.log))

    def accept(self, bid: SignedBid) -> SignedEvent:
        rejection = self.ledger.check_bid(bid, self.identity.node_id)
        assert rejection is None, rejection
        return self.event(accept=Accept(bid=bid))

    def close(self, key: AuctionKey) -> SignedEvent:
        assert self.ledger.check_close(key, self.identity.node_id) is None
        return self.event(close=Close(auction=key.message()))


def bid(who: Identity, key: AuctionKey, amount: str, nonce: int = 0,
        currency: str = "USDt") -> SignedBid:
    return make_signed_bid(who, key, amount, currency, nonce or hash(amount) & 0xFFFF, T0)


def raw_event(ident: Identity, seq: int, prev: bytes, **body: object) -> SignedEvent:
    event = Event(author=ident.node_id, seq=seq, prev=prev, time_ms=T0, author_name=ident.name,
                  **body)
    return sign_event(ident, event)


def sha(signed: SignedEvent) -> bytes:
    return hashlib.sha256(signed.event).digest()


def snapshot(ledger: Ledger) -> object:
    """Everything that must converge, in a comparable form."""
    return (
        sorted(ledger.heads().items()),
        sorted((a, ledger.head_hash(a)) for a in ledger.heads()),
        [(a.key, a.seller_name, a.item, a.start_amount, a.currency, a.opened_ms, a.closed,
          a.closed_ms, [(b.bidder, b.bidder_name, b.amount, b.currency, b.time_ms)
                        for b in a.bids])
         for a in ledger.auctions(include_closed=True)],
        ledger.forks(),
        ledger.event_count,
    )


# ---------------------------------------------------------------- the reference scenario


def test_reference_scenario() -> None:
    s1, s2 = Author(C1), Author(C2)
    pic1 = s1.open("Pic#1", "75")
    pic2 = s2.open("Pic#2", "60")
    assert s1.ledger.auction(pic1) is not None
    assert s1.ledger.auction(pic1).label == "Client#1->Pic#1"  # type: ignore[union-attr]

    s1.accept(bid(C2, pic1, "75", 1))  # at the start price
    s1.accept(bid(C3, pic1, "75.5", 2))
    s1.accept(bid(C2, pic1, "80", 3))

    too_low = s1.ledger.check_bid(bid(C3, pic1, "79", 4), C1.node_id)
    assert too_low == Rejection(RejectCode.BID_TOO_LOW, "best is 80 USDt by Client#2")
    assert str(too_low) == "BID_TOO_LOW (best is 80 USDt by Client#2)"
    assert too_low is not None and too_low.code_name == "BID_TOO_LOW"

    self_bid = s1.ledger.check_bid(bid(C1, pic1, "100", 5), C1.node_id)
    assert self_bid is not None and self_bid.code == RejectCode.SELF_BID

    closing = s1.close(pic1)
    after = s1.ledger.check_bid(bid(C3, pic1, "100", 6), C1.node_id)
    assert after is not None and after.code == RejectCode.AUCTION_CLOSED

    # Every other node, fed the logs (in any order of authors), reaches the same state.
    replica = Ledger()
    notes = []
    for signed in s2.log + s1.log:
        result = replica.apply(signed)
        assert result.rejection is None
        notes.extend(result.notifications)
    seller_only = Ledger()
    for signed in s1.log:
        seller_only.apply(signed)
    assert snapshot(seller_only) == snapshot(s1.ledger) != snapshot(Ledger())
    for signed in s2.log:  # the seller's node hears of Pic#2 too
        s1.ledger.apply(signed)
    assert snapshot(replica) == snapshot(s1.ledger)
    texts = [n.text for n in notes]
    assert texts == [
        "Client#2 opened Pic#2 at 60 USDt",
        "Client#1 opened Pic#1 at 75 USDt",
        "Client#2 bid 75 USDt on Client#1->Pic#1",
        "Client#3 bid 75.5 USDt on Client#1->Pic#1",
        "Client#2 bid 80 USDt on Client#1->Pic#1",
        "Client#1->Pic#1 closed: Client#2 -> 80 USDt",
    ]
    closed = notes[-1]
    assert isinstance(closed, Closed) and "Client#2 -> 80 USDt" in closed.text
    assert closed.winner is not None and closed.winner.amount == Decimal(80)
    assert closed.auction.closed and closed.auction.winner == closed.winner
    # The notifications carry snapshots: the first bid's shows one bid only.
    first_bid = notes[2]
    assert isinstance(first_bid, BidAccepted) and len(first_bid.auction.bids) == 1
    assert isinstance(notes[1], Opened) and notes[1].auction.bids == []
    assert replica.auction(pic2) is not None
    assert [a.key for a in replica.auctions(include_closed=False)] == [pic2]
    assert [a.key for a in replica.auctions(include_closed=True)] == [pic2, pic1]
    winner = replica.auction(pic1).winner  # type: ignore[union-attr]
    assert winner is not None and winner.bidder == C2.node_id
    assert replica.names() == {C1.node_id: "Client#1", C2.node_id: "Client#2",
                               C3.node_id: "Client#3"}
    assert replica.head_hash(C1.node_id) == sha(closing)


def test_close_without_bids() -> None:
    s1 = Author(C1)
    key = s1.open("Pic#1", "75")
    s1.close(key)
    replica = Ledger()
    notes = [n for e in s1.log for n in replica.apply(e).notifications]
    assert notes[-1].text == "Client#1->Pic#1 closed with no bids"
    assert isinstance(notes[-1], Closed) and notes[-1].winner is None


# ---------------------------------------------------------------- check_* rules


def test_check_bid_rules() -> None:
    s1, s2 = Author(C1), Author(C2)
    key = s1.open("Pic#1", "75")
    other = s2.open("Pic#2", "60")
    check = s1.ledger.check_bid

    def code(b: SignedBid, seller: bytes = C1.node_id) -> RejectCode | None:
        r = check(b, seller)
        return r.code if r is not None else None

    assert code(bid(C2, key, "74.999999")) == RejectCode.BID_TOO_LOW
    assert check(bid(C2, key, "74"), C1.node_id) == Rejection(
        RejectCode.BID_TOO_LOW, "start price is 75 USDt")
    assert code(bid(C2, key, "75")) is None
    assert code(bid(C2, key, "75", currency="EUR")) == RejectCode.CURRENCY_MISMATCH
    assert code(bid(C2, key, "75.1234567")) == RejectCode.BAD_AMOUNT
    assert code(bid(C2, key, "-1")) == RejectCode.BAD_AMOUNT
    assert code(bid(C1, key, "90")) == RejectCode.SELF_BID
    assert code(bid(C2, AuctionKey(C1.node_id, 99), "80")) == RejectCode.AUCTION_NOT_FOUND
    assert code(bid(C2, key, "80"), seller=C3.node_id) == RejectCode.NOT_SELLER
    assert code(bid(C1, other, "80")) == RejectCode.NOT_SELLER
    forged = bid(C2, key, "80")
    forged = SignedBid(bid=forged.bid, signature=C3.sign(forged.bid))
    assert code(forged) == RejectCode.BAD_SIGNATURE
    assert code(SignedBid(bid=b"\xff\xff", signature=b"")) == RejectCode.BAD_EVENT
    no_auction = bytes(Bid(bidder=C2.node_id, bidder_name="Client#2", amount="80",
                           currency="USDt", nonce=1))
    assert code(SignedBid(bid=no_auction, signature=C2.sign(no_auction))) == (
        RejectCode.AUCTION_NOT_FOUND)
    evil = bytes(Bid(auction=key.message(), bidder=C2.node_id, bidder_name="\x1b[31mX",
                     amount="80", currency="USDt", nonce=1))
    assert code(SignedBid(bid=evil, signature=C2.sign(evil))) == RejectCode.BAD_EVENT

    replayed = bid(C2, key, "80", nonce=7)
    s1.accept(replayed)
    again = check(replayed, C1.node_id)
    assert again is not None and again.code == RejectCode.BAD_EVENT and "replayed" in again.reason
    assert code(bid(C3, key, "80")) == RejectCode.BID_TOO_LOW
    assert code(bid(C3, key, "80.000001")) is None


def test_check_close() -> None:
    s1 = Author(C1)
    key = s1.open("Pic#1", "75")
    assert s1.ledger.check_close(key, C2.node_id) == Rejection(
        RejectCode.NOT_SELLER, "only the seller Client#1 can close Client#1->Pic#1")
    missing = s1.ledger.check_close(AuctionKey(C1.node_id, 5), C1.node_id)
    assert missing is not None and missing.code == RejectCode.AUCTION_NOT_FOUND
    s1.close(key)
    closed = s1.ledger.check_close(key, C1.node_id)
    assert closed is not None and closed.code == RejectCode.AUCTION_CLOSED


def test_check_open() -> None:
    check = Ledger().check_open
    assert check("Pic#1", "75", "USDt") is None
    for item, amount, currency, expected in [
        ("", "75", "USDt", RejectCode.BAD_ITEM),
        (" Pic", "75", "USDt", RejectCode.BAD_ITEM),
        ("a\nb", "75", "USDt", RejectCode.BAD_ITEM),
        ("x" * 101, "75", "USDt", RejectCode.BAD_ITEM),
        ("Pic", "0", "USDt", RejectCode.BAD_AMOUNT),
        ("Pic", "1e3", "USDt", RejectCode.BAD_AMOUNT),
        ("Pic", "75", "US Dt", RejectCode.BAD_CURRENCY),
        ("Pic", "75", "", RejectCode.BAD_CURRENCY),
        ("Pic", "75", "ABCDEFGHIJKLM", RejectCode.BAD_CURRENCY),
    ]:
        rejection = check(item, amount, currency)
        assert rejection is not None and rejection.code == expected, (item, amount, currency)
        assert rejection.reason


def test_next_event_needs_exactly_one_body() -> None:
    with pytest.raises(ValueError):
        Ledger().next_event(C1.node_id, "Client#1", T0)
    with pytest.raises(ValueError):
        Ledger().next_event(C1.node_id, "Client#1", T0, open=Open(), close=Close())


# ---------------------------------------------------------------- apply: refusals


def test_events_that_break_rules_do_not_advance_the_head() -> None:
    s1 = Author(C1)
    key = s1.open("Pic#1", "75")
    ledger = Ledger()
    ledger.apply(s1.log[0])
    prev = sha(s1.log[0])
    low = make_signed_bid(C2, key, "70", "USDt", 1, T0)
    cases = [
        (raw_event(C1, 2, prev, accept=Accept(bid=low)), RejectCode.BID_TOO_LOW),
        (raw_event(C1, 2, prev, accept=Accept(bid=bid(C1, key, "80"))), RejectCode.SELF_BID),
        (raw_event(C1, 2, prev, accept=Accept(bid=bid(C2, AuctionKey(C1.node_id, 9), "80"))),
         RejectCode.AUCTION_NOT_FOUND),
        (raw_event(C1, 2, prev, accept=Accept(bid=bid(C2, AuctionKey(C3.node_id, 1), "80"))),
         RejectCode.NOT_SELLER),
        (raw_event(C1, 2, prev, close=Close(auction=AuctionId(author=C3.node_id, seq=1))),
         RejectCode.NOT_SELLER),
        (raw_event(C1, 2, prev, close=Close(auction=AuctionId(author=C1.node_id, seq=7))),
         RejectCode.AUCTION_NOT_FOUND),
        (raw_event(C1, 2, prev, close=Close()), RejectCode.BAD_EVENT),
        (raw_event(C1, 2, prev, open=Open(item="", start_amount="1", currency="USDt")),
         RejectCode.BAD_ITEM),
        (raw_event(C1, 2, b"\x00" * 32, open=Open(item="x", start_amount="1", currency="X")),
         RejectCode.BAD_EVENT),  # wrong prev
        (raw_event(C1, 2, prev), RejectCode.BAD_EVENT),  # no body
        (raw_event(C1, 0, b"", open=Open(item="x", start_amount="1", currency="X")),
         RejectCode.BAD_EVENT),  # seq 0
    ]
    forged_bid = bid(C2, key, "80")
    forged_bid = SignedBid(bid=forged_bid.bid, signature=C1.sign(forged_bid.bid))
    cases.append((raw_event(C1, 2, prev, accept=Accept(bid=forged_bid)),
                  RejectCode.BAD_SIGNATURE))
    good = raw_event(C1, 2, prev, open=Open(item="x", start_amount="1", currency="X"))
    cases.append((SignedEvent(event=good.event, signature=C2.sign(good.event)),
                  RejectCode.BAD_SIGNATURE))
    cases.append((SignedEvent(event=good.event[:-1] + b"Y", signature=good.signature),
                  RejectCode.BAD_SIGNATURE))
    before = snapshot(ledger)
    for signed, expected in cases:
        result = ledger.apply(signed)
        assert result.rejection is not None and result.rejection.code == expected, (
            expected, result.rejection)
        assert result.applied == [] and result.notifications == [] and not result.held
        assert snapshot(ledger) == before
    assert ledger.apply(good).rejection is None
    assert ledger.heads() == {C1.node_id: 2}


def test_bid_signature_is_checked_on_apply_but_not_when_verified() -> None:
    s1 = Author(C1)
    key = s1.open("Pic#1", "75")
    b = bid(C2, key, "80")
    forged = SignedBid(bid=b.bid, signature=b"\x00" * 64)
    event = raw_event(C1, 2, sha(s1.log[0]), accept=Accept(bid=forged))
    ledger = Ledger()
    ledger.apply(s1.log[0])
    rejection = ledger.apply(event).rejection
    assert rejection is not None and rejection.code == RejectCode.BAD_SIGNATURE
    unsigned = SignedEvent(event=event.event, signature=b"")
    assert ledger.apply(unsigned, verified=True).rejection is None  # trusted store rows


def test_duplicates_change_nothing() -> None:
    s1 = Author(C1)
    s1.open("Pic#1", "75")
    ledger = Ledger()
    assert len(ledger.apply(s1.log[0]).applied) == 1
    before = snapshot(ledger)
    again = ledger.apply(s1.log[0])
    assert again.duplicate and again.rejection is None and again.applied == []
    # The same bytes with a junk signature: still only a duplicate, nothing changes.
    junk = ledger.apply(SignedEvent(event=s1.log[0].event, signature=b"junk"))
    assert junk.duplicate and snapshot(ledger) == before


def test_fork_keeps_the_first_event() -> None:
    first = raw_event(C1, 1, b"", open=Open(item="A", start_amount="1", currency="X"))
    second = raw_event(C1, 1, b"", open=Open(item="B", start_amount="1", currency="X"))
    ledger = Ledger()
    ledger.apply(first)
    result = ledger.apply(second)
    assert result.rejection is not None and "fork" in result.rejection.reason
    assert ledger.forks() == [(C1.node_id, 1)]
    assert [a.item for a in ledger.auctions()] == ["A"]
    # A different event at a known slot, badly signed, is junk rather than a fork.
    other = Ledger()
    other.apply(first)
    junk = other.apply(SignedEvent(event=second.event, signature=C2.sign(second.event)))
    assert junk.rejection is not None and junk.rejection.code == RejectCode.BAD_SIGNATURE
    assert other.forks() == []


def test_fork_among_held_events() -> None:
    third_a = raw_event(C1, 3, b"\x01" * 32, open=Open(item="A", start_amount="1", currency="X"))
    third_b = raw_event(C1, 3, b"\x01" * 32, open=Open(item="B", start_amount="1", currency="X"))
    ledger = Ledger()
    assert ledger.apply(third_a).held
    again = ledger.apply(third_a)
    assert again.held and again.duplicate
    assert ledger.apply(third_b).rejection is not None
    assert ledger.forks() == [(C1.node_id, 3)]


def test_gap_is_held_then_released_in_order() -> None:
    s1 = Author(C1)
    key = s1.open("Pic#1", "75")
    s1.accept(bid(C2, key, "75"))
    s1.accept(bid(C3, key, "76"))
    s1.close(key)
    ledger = Ledger()
    for signed in reversed(s1.log[1:]):
        result = ledger.apply(signed)
        assert result.held and result.applied == [] and result.rejection is None
    assert ledger.heads() == {} and ledger.held_count == 3
    result = ledger.apply(s1.log[0])
    assert [e.seq for e in result.applied] == [1, 2, 3, 4]
    assert [e.signed for e in result.applied] == s1.log
    assert [type(n) for n in result.notifications] == [Opened, BidAccepted, BidAccepted, Closed]
    assert ledger.held_count == 0
    assert snapshot(ledger) == snapshot(s1.ledger)


def test_held_event_that_breaks_a_rule_is_dropped_on_release() -> None:
    s1 = Author(C1)
    key = s1.open("Pic#1", "75")
    low = raw_event(C1, 2, sha(s1.log[0]), accept=Accept(bid=bid(C2, key, "10")))
    ledger = Ledger()
    assert ledger.apply(low).held
    result = ledger.apply(s1.log[0])
    assert [e.seq for e in result.applied] == [1]
    assert ledger.heads() == {C1.node_id: 1} and ledger.dropped_count == 1


def test_held_events_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "MAX_HELD_PER_AUTHOR", 3)
    monkeypatch.setattr(ledger_module, "MAX_HELD_TOTAL", 5)
    ledger = Ledger()

    def far(ident: Identity, seq: int) -> SignedEvent:
        return raw_event(ident, seq, b"\x01" * 32,
                         open=Open(item=f"I{seq}", start_amount="1", currency="X"))

    assert all(ledger.apply(far(C1, s)).held for s in range(10, 13))
    over = ledger.apply(far(C1, 13))
    assert not over.held and over.rejection is not None
    assert "waiting behind gaps" in over.rejection.reason
    assert all(ledger.apply(far(C2, s)).held for s in range(10, 12))
    assert ledger.apply(far(C3, 10)).rejection is not None  # the total cap
    assert ledger.held_count == 5


@pytest.mark.parametrize("junk", [
    b"", b"\x00", b"\xff" * 20, b"\x0a\x05abc", b"\x10" + b"\xff" * 11,
    b"\x52\x02\x08\x01",  # Event.parse gives Open(item=1) here
    bytes(Event(author=b"short", seq=1, open=Open(item="x", start_amount="1",
                                                  currency="X"))),
    bytes(Event(author=C1.node_id, seq=2**63, open=Open(item="x", start_amount="1",
                                                         currency="X"))),
    b"\x0b\x0c",  # group wire types
    b"\x00\x01",  # field number 0
    b"x" * (MAX_EVENT_BYTES + 1),
])
def test_junk_events_are_rejected(junk: bytes) -> None:
    ledger = Ledger()
    result = ledger.apply(SignedEvent(event=junk, signature=b"s" * 64))
    assert result.rejection is not None
    assert result.rejection.code in (RejectCode.BAD_EVENT, RejectCode.BAD_SIGNATURE)
    assert ledger.event_count == 0 and ledger.heads() == {}


def test_two_bodies_are_refused() -> None:
    open_part = bytes(Event(open=Open(item="x", start_amount="1", currency="X")))
    close_part = bytes(Event(close=Close(auction=AuctionId(author=C1.node_id, seq=1))))
    head = bytes(Event(author=C1.node_id, seq=1, author_name="Client#1"))
    data = head + open_part + close_part
    result = Ledger().apply(SignedEvent(event=data, signature=C1.sign(data)))
    assert result.rejection is not None and "more than one body" in result.rejection.reason


# ---------------------------------------------------------------- resolve


def test_resolve() -> None:
    s1 = Author(C1)
    pic1 = s1.open("Pic#1", "75")
    s1.open("Pic#2", "75")
    s1.close(pic1)
    again = s1.open("Pic#1", "90")  # a second auction with the same label
    s3 = Author(C3)
    pic3 = s3.open("Vase", "5")
    ledger = Ledger()
    for signed in s1.log + s3.log:
        ledger.apply(signed)

    assert ledger.resolve(pic1.text) == pic1
    assert ledger.resolve(f"  {pic3.text}  ") == pic3
    assert ledger.resolve(pic3.text.upper()) == pic3
    assert ledger.resolve(C3.node_id.hex()[:6]) == pic3
    assert ledger.resolve("Client#3->Vase") == pic3
    ambiguous = ledger.resolve("Client#1->Pic#1")
    assert isinstance(ambiguous, Rejection)
    assert ambiguous.code == RejectCode.AMBIGUOUS_AUCTION
    assert pic1.text in ambiguous.reason and again.text in ambiguous.reason
    prefix = ledger.resolve(C1.node_id.hex()[:8])
    assert isinstance(prefix, Rejection) and prefix.code == RejectCode.AMBIGUOUS_AUCTION
    # Only the canonical spelling of a full id is that id (no leading zeros, no spaces).
    for missing in ["", "Client#9->Pic#1", "zz", f"{C3.node_id.hex()}:9",
                    f"{C3.node_id.hex()}:01", f"{C3.node_id.hex()[:2]} {C3.node_id.hex()[2:]}:1",
                    f"{C3.node_id.hex()}:+1"]:
        result = ledger.resolve(missing)
        assert isinstance(result, Rejection) and result.code == RejectCode.AUCTION_NOT_FOUND
    # "<hex>:1" is a prefix of "<hex>:10"; the exact id wins.
    many = Author(C2)
    keys = [many.open(f"P{i}", "1") for i in range(10)]
    replica = Ledger()
    for signed in many.log:
        replica.apply(signed)
    assert replica.resolve(keys[0].text) == keys[0]
    assert replica.resolve(keys[9].text) == keys[9]


def test_auction_key_round_trip() -> None:
    key = AuctionKey(C1.node_id, 7)
    assert AuctionKey.from_message(key.message()) == key
    assert key.text == f"{C1.node_id.hex()}:7"


def test_rejection_code_name_for_unknown_codes() -> None:
    assert Rejection(RejectCode.AUCTION_CLOSED, "").code_name == "AUCTION_CLOSED"
    assert str(Rejection(RejectCode.AUCTION_CLOSED, "")) == "AUCTION_CLOSED"
    unknown = Rejection(RejectCode(99), "x")
    assert "99" in unknown.code_name


def test_short_id_from_list_resolves_to_one_auction() -> None:
    from peer.cli.render import short_auction_ids
    from peer.net.views import auction_view

    c1, c2 = Author(C1), Author(C2)
    first, second = c1.open("Pic#1", "75"), c1.open("Pic#2", "60")
    other = c2.open("Pic#1", "10")
    node = Ledger()
    for signed in c1.log + c2.log:
        assert node.apply(signed).rejection is None
    ids = short_auction_ids([auction_view(a) for a in node.auctions(True)])
    assert len(set(ids.values())) == 3
    for key in (first, second, other):
        short = ids[key.text]
        assert short == f"{key.author.hex()[:8]}:{key.seq}"
        assert node.resolve(short) == key
        assert node.resolve(short.upper()) == key
    # The old tag (a seller prefix alone) still names no single auction.
    tag = node.resolve(C1.node_id.hex()[:16])
    assert isinstance(tag, Rejection) and tag.code == RejectCode.AMBIGUOUS_AUCTION
    missing = node.resolve(f"{C1.node_id.hex()[:8]}:9")
    assert isinstance(missing, Rejection) and missing.code == RejectCode.AUCTION_NOT_FOUND


def test_short_ids_grow_until_sellers_differ() -> None:
    from peer.cli.render import short_auction_ids
    from peer.gen.auction.v1 import AuctionView

    twins = [bytes.fromhex("ab" * 5 + "00" * 27), bytes.fromhex("ab" * 5 + "01" + "00" * 26)]
    views = [AuctionView(id=f"{s.hex()}:1", seller=s) for s in twins]
    ids = short_auction_ids(views)
    assert sorted(ids.values()) == [f"{'ab' * 5}00:1", f"{'ab' * 5}01:1"]


def test_colliding_names_get_a_short_id_in_notification_texts() -> None:
    twin_a = Identity.from_seed(b"\x0a" * 32, "Twin")
    twin_b = Identity.from_seed(b"\x0b" * 32, "Twin")
    a, b = Author(twin_a), Author(twin_b)
    node = Ledger()
    key = a.open("Pic#1", "10")
    texts = [n.text for n in node.apply(a.log[-1]).notifications]
    assert texts == ["Twin opened Pic#1 at 10 USDt"]  # one Twin known: no id needed
    b.ledger.apply(a.log[-1])
    b.open("Pic#2", "20")
    texts = [n.text for n in node.apply(b.log[-1]).notifications]
    short_a, short_b = twin_a.node_id.hex()[:8], twin_b.node_id.hex()[:8]
    assert texts == [f"Twin ({short_b}) opened Pic#2 at 20 USDt"]
    a.ledger.apply(b.log[-1])
    a.accept(bid(twin_b, key, "15"))
    texts = [n.text for n in node.apply(a.log[-1]).notifications]
    assert texts == [f"Twin ({short_b}) bid 15 USDt on Twin ({short_a})->Pic#1"]
    a.close(key)
    texts = [n.text for n in node.apply(a.log[-1]).notifications]
    assert texts == [f"Twin ({short_a})->Pic#1 closed: Twin ({short_b}) -> 15 USDt"]
