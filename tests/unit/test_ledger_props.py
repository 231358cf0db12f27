"""peer.core.ledger properties (hypothesis): convergence in any interleaving, refusals, junk."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peer.core.identity import Identity
from peer.core.ledger import Ledger
from peer.core.rules import Rejection, check_currency, check_item, format_amount, parse_amount
from peer.core.signed_events import decode_signed, sign_event
from peer.gen.auction.v1 import Event, Open, RejectCode, SignedEvent
from tests.unit.test_ledger import Author, bid, raw_event, sha, snapshot
from tests.unit.timed_support import ClockedAuthor, outcome

PEOPLE = [Identity.from_seed(bytes([i + 1]) * 32, f"Client#{i + 1}") for i in range(4)]
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# An action: (kind, actor index, auction choice, bidder index, amount step). Bids and
# closes go to the seller of the chosen auction; every author opens one auction first.
actions = st.lists(
    st.tuples(st.sampled_from(["open", "bid", "bid", "bid", "bid", "close"]),
              st.integers(0, 3), st.integers(0, 15), st.integers(0, 3),
              st.sampled_from(["0", "0.5", "1", "2.25", "10"])),
    min_size=3, max_size=30)


def build(script: list[tuple[str, int, int, int, str]]) -> tuple[list[Author], Ledger]:
    """Play a script through the authors' own ledgers; invalid actions are skipped.

    Returns the authors (with their logs) and a reference ledger fed every log in order.
    """
    authors = [Author(p) for p in PEOPLE]
    opened = [a.open("First", "10") for a in authors]
    by_id = {a.identity.node_id: a for a in authors}
    for kind, actor, choice, bidder, step in script:
        if kind == "open":
            opened.append(authors[actor].open(f"Item{len(opened)}", "10"))
            continue
        key = opened[choice % len(opened)]
        seller = by_id[key.author]
        auction = seller.ledger.auction(key)
        assert auction is not None
        if kind == "close":
            if not auction.closed:
                seller.close(key)
            continue
        if auction.best is None:
            amount = auction.start_amount + Decimal(step)
        else:
            amount = auction.best.amount + Decimal(step) + Decimal("0.000001")
        seller.nonce += 1
        signed_bid = bid(PEOPLE[bidder], key, format_amount(amount), seller.nonce)
        if seller.ledger.check_bid(signed_bid, seller.identity.node_id) is None:
            seller.accept(signed_bid)
    reference = Ledger()
    for author in authors:
        for signed in author.log:
            assert reference.apply(signed).rejection is None
    return authors, reference


@SETTINGS
@given(actions, st.randoms(use_true_random=False), st.integers(0, 3))
def test_any_interleaving_with_duplicates_and_gaps_converges(
        script: list[tuple[str, int, int, int, str]], rnd: random.Random, dups: int) -> None:
    authors, reference = build(script)
    events = [e for a in authors for e in a.log]
    delivery = events + [rnd.choice(events) for _ in range(dups * len(events) // 3)] \
        if events else []
    rnd.shuffle(delivery)
    replica = Ledger()
    applied: list[tuple[bytes, int]] = []
    for signed in delivery:
        result = replica.apply(signed)
        assert result.rejection is None, result.rejection
        assert len(result.notifications) == len(result.applied)
        applied.extend((e.author, e.seq) for e in result.applied)
    assert snapshot(replica) == snapshot(reference)
    # Every event applied exactly once, each author's in seq order.
    assert sorted(applied) == sorted(set(applied)) and len(applied) == len(events)
    for author in {a for a, _ in applied}:
        seqs = [s for a, s in applied if a == author]
        assert seqs == sorted(seqs)
    assert replica.held_count == 0
    # Each seller's own ledger agrees with the replica about its auctions.
    for a in authors:
        for auction in a.ledger.auctions(include_closed=True):
            if auction.seller == a.identity.node_id:
                other = replica.auction(auction.key)
                assert other is not None and other.bids == auction.bids
                assert other.closed == auction.closed


@SETTINGS
@given(actions, st.integers(0, 3), st.sampled_from(["flip", "sig", "prev", "seq", "author",
                                                    "replay"]), st.integers(0, 10_000))
def test_tampered_events_are_refused_and_change_nothing(
        script: list[tuple[str, int, int, int, str]], who: int, how: str, where: int) -> None:
    authors, _ = build(script)
    log = authors[who].log
    if not log:
        return
    ledger = Ledger()
    for a in authors:
        for signed in (a.log[:-1] if a is authors[who] else a.log):
            ledger.apply(signed)
    before = snapshot(ledger)
    last = log[-1]
    ident = PEOPLE[who]
    if how == "flip":
        i = where % len(last.event)
        data = last.event[:i] + bytes([last.event[i] ^ (1 << (where % 8))]) + last.event[i + 1:]
        tampered = SignedEvent(event=data, signature=last.signature)
    elif how == "sig":
        tampered = SignedEvent(event=last.event, signature=PEOPLE[(who + 1) % 4].sign(last.event))
    elif how == "prev":
        tampered = raw_event(ident, len(log), b"\x07" * 32,
                             open=Open(item="x", start_amount="1", currency="X"))
    elif how == "seq":
        prev = sha(log[-2]) if len(log) > 1 else b""
        tampered = raw_event(ident, len(log) + 5 + where % 3, prev,
                             open=Open(item="x", start_amount="1", currency="X"))
        result = ledger.apply(tampered)
        # A valid-looking event beyond the head waits; it is never applied alone.
        assert result.held and result.applied == [] and snapshot(ledger) == before
        return
    elif how == "author":
        tampered = SignedEvent(event=last.event, signature=ident.sign(last.event + b"x"))
    else:  # replay an event that was already applied
        if len(log) < 2:
            return
        result = ledger.apply(log[where % (len(log) - 1)])
        assert result.duplicate and snapshot(ledger) == before
        return
    result = ledger.apply(tampered)
    assert result.rejection is not None
    assert result.applied == [] and result.notifications == []
    assert snapshot(ledger) == before
    assert ledger.apply(last).rejection is None  # the genuine event still applies


# Decodable events with loose field values, so that ``verified=True`` (no signature
# check) reaches the ledger's rules, and raw bytes, which mostly do not decode.
_VALID_OPEN = {"author": PEOPLE[0].node_id, "author_name": "Client#1", "item": "Pic#1",
               "start_amount": "10", "currency": "USDt"}
_SPOILERS = st.sampled_from([("author", b""), ("author", b"\x01" * 31),
                             ("author_name", ""), ("author_name", "x" * 200),
                             ("item", ""), ("start_amount", "abc"), ("start_amount", "0"),
                             ("currency", "")])


def _open_bytes(seq: int, prev: bytes, spoil: tuple[str, object] | None) -> bytes:
    values: dict[str, object] = dict(_VALID_OPEN)
    if spoil is not None:
        values[spoil[0]] = spoil[1]
    return bytes(Event(author=values["author"], seq=seq, prev=prev, time_ms=1,
                       author_name=values["author_name"],
                       open=Open(item=values["item"], start_amount=values["start_amount"],
                                 currency=values["currency"])))


_loose_events = st.builds(_open_bytes, st.integers(0, 3), st.sampled_from([b"", b"\x07" * 32]),
                          st.none() | _SPOILERS)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), _loose_events), st.binary(max_size=80),
       st.booleans())
def test_arbitrary_bytes_never_raise(data: bytes, signature: bytes, verified: bool) -> None:
    ledger = Ledger()
    signed = SignedEvent(event=data, signature=signature)
    result = ledger.apply(signed, verified=verified)
    # Exactly one outcome, and the ledger holds exactly what the result says.
    assert [result.rejection is not None, result.held, bool(result.applied)].count(True) == 1
    assert ledger.event_count == len(result.applied)
    assert ledger.held_count == int(result.held)
    decoded = decode_signed(signed)
    if isinstance(decoded, Rejection):
        assert result.rejection == decoded  # undecodable: refused for that reason
        return
    body = decoded.body()
    if isinstance(body, Rejection):
        assert result.rejection == body  # a bad value is refused before any signature
    elif not verified:
        # Nobody signed these bytes: the author's signature cannot match.
        assert result.rejection is not None
        assert result.rejection.code == RejectCode.BAD_SIGNATURE
    elif decoded.fields.seq > 1:
        assert result.held  # valid so far, waits for seq 1
    elif decoded.fields.prev != b"":
        assert result.rejection is not None and result.rejection.code == RejectCode.BAD_EVENT
    else:
        assert [e.seq for e in result.applied] == [1]
        assert ledger.heads() == {decoded.fields.author: 1}


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(0, 255), min_size=1, max_size=4),
       st.booleans())
def test_mutated_real_events_never_raise(position: int, values: list[int],
                                         verified: bool) -> None:
    seller = Author(PEOPLE[0])
    key = seller.open("Pic", "10")
    seller.accept(bid(PEOPLE[1], key, "11", 1))
    signed = seller.log[-1]
    data = bytearray(signed.event)
    for offset, value in enumerate(values):
        data[(position + offset) % len(data)] = value
    ledger = Ledger()
    ledger.apply(seller.log[0])
    before = snapshot(ledger)
    mutated = SignedEvent(event=bytes(data), signature=signed.signature)
    result = ledger.apply(mutated, verified=verified)
    assert [result.rejection is not None, result.held, bool(result.applied),
            result.duplicate].count(True) == 1
    assert ledger.event_count == 1 + len(result.applied)
    if bytes(data) == signed.event:  # the mutation wrote the bytes that were there
        assert [e.seq for e in result.applied] == [2]
        return
    if not verified:
        # The signature covers the exact bytes: any change is refused, nothing moves.
        assert result.rejection is not None
        assert snapshot(ledger) == before and ledger.held_count == 0
        assert [e.seq for e in ledger.apply(signed).applied] == [2]  # the genuine one still does
    elif result.rejection is not None:
        # Trusted as signed, still refused by the rules: only a fork may be recorded.
        assert ledger.heads() == {PEOPLE[0].node_id: 1}
        assert ledger.held_count == 0 and ledger.auctions(include_closed=True)[0].bids == []


# ---------------------------------------------------------------- value rules


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.from_regex(r"[0-9]{1,20}(\.[0-9]{1,8})?",
                                                      fullmatch=True)))
def test_parse_amount_total(text: str) -> None:
    result = parse_amount(text)
    if isinstance(result, Decimal):
        assert result > 0 and result.is_finite()
        exponent = result.as_tuple().exponent
        assert isinstance(exponent, int) and exponent >= -6
        assert parse_amount(format_amount(result)) == result
        assert all(c in "0123456789." for c in text)
    else:
        assert result.code == RejectCode.BAD_AMOUNT and result.reason


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10**18 - 1), places=6,
                   allow_nan=False, allow_infinity=False))
def test_format_amount_round_trips(amount: Decimal) -> None:
    text = format_amount(amount)
    assert "E" not in text and "e" not in text
    assert not ("." in text and text.endswith("0")) and not text.endswith(".")
    assert parse_amount(text) == amount


def test_amount_examples() -> None:
    assert format_amount(Decimal("80.000")) == "80"
    assert format_amount(Decimal("75.50")) == "75.5"
    assert format_amount(Decimal("1E+2")) == "100"
    for bad in ["", "0", "0.0", "-1", "+1", "1e3", "NaN", "Infinity", "1_000", " 1", "1.",
                ".5", "1.1234567", "٧٥", "1" * 19, "1" * 31]:
        result = parse_amount(bad)
        assert not isinstance(result, Decimal), bad
    assert parse_amount("075") == Decimal(75)
    assert parse_amount("1" * 18) == Decimal("1" * 18)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_item_rule(item: str) -> None:
    rejection = check_item(item)
    if rejection is None:
        assert 1 <= len(item) <= 100 and item.isprintable() and item == item.strip()
    else:
        assert rejection.code == RejectCode.BAD_ITEM and rejection.reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=16))
def test_currency_rule(currency: str) -> None:
    rejection = check_currency(currency)
    if rejection is None:
        assert 1 <= len(currency) <= 12 and currency.isascii() and currency.isalnum()
    else:
        assert rejection.code == RejectCode.BAD_CURRENCY and rejection.reason


def test_sign_event_signs_the_serialized_bytes() -> None:
    ledger = Ledger()
    event = ledger.next_event(PEOPLE[0].node_id, "Client#1", 5,
                              open=Open(item="x", start_amount="1", currency="X"))
    signed = sign_event(PEOPLE[0], event)
    assert signed.event == bytes(event)
    assert ledger.apply(signed).rejection is None


@SETTINGS
@given(actions, st.randoms(use_true_random=False))
def test_undoing_the_newest_events_gives_the_ledger_that_never_saw_them(
        script: list[tuple[str, int, int, int, str]], rnd: random.Random) -> None:
    authors, reference = build(script)
    # Every author keeps a random prefix of its log; the rest is applied, then undone
    # newest first, in a random interleaving of the authors.
    kept = {a.identity.node_id: rnd.randint(0, len(a.log)) for a in authors}
    prefix = Ledger()
    for author in authors:
        for signed in author.log[:kept[author.identity.node_id]]:
            assert prefix.apply(signed).rejection is None
    replica = Ledger()
    applied = []
    queues = [list(a.log) for a in authors]
    while any(queues):
        queue = rnd.choice([q for q in queues if q])
        result = replica.apply(queue.pop(0))
        assert result.rejection is None, result.rejection
        applied.extend(result.applied)
    undone = [e for e in reversed(applied) if e.seq > kept[e.author]]
    for event in undone:
        replica.undo(event)
    assert snapshot(replica) == snapshot(prefix)
    # Undo leaves nothing behind that would refuse the events again (nonces, closes).
    for event in reversed(undone):
        assert replica.apply(event.signed).rejection is None
    assert snapshot(replica) == snapshot(reference)


def test_undo_takes_only_the_newest_event_and_restores_the_name() -> None:
    seed = bytes([9]) * 32
    author = Author(Identity.from_seed(seed, "Old"))
    author.open("Pic#1", "1")
    author.identity = Identity.from_seed(seed, "New")
    author.open("Pic#2", "1")
    ledger = Ledger()
    applied = [e for signed in author.log for e in ledger.apply(signed).applied]
    assert ledger.names()[author.identity.node_id] == "New"
    with pytest.raises(ValueError, match="newest"):
        ledger.undo(applied[0])
    ledger.undo(applied[1])
    assert ledger.names()[author.identity.node_id] == "Old"
    assert [a.item for a in ledger.auctions()] == ["Pic#1"]
    ledger.undo(applied[0])
    assert ledger.heads() == {} and ledger.event_count == 0
    with pytest.raises(ValueError, match="newest"):
        ledger.undo(applied[0])


def test_undo_gives_back_the_end_an_anti_sniping_bid_moved_and_the_last_stamp() -> None:
    seller = ClockedAuthor(Identity.from_seed(bytes([10]) * 32, "Seller"))
    key = seller.open("Pic#1", ends_in=60_000, extend=10_000)
    seller.now += 55_000  # inside the last 10 s: each bid moves the end
    for n, who in enumerate(PEOPLE[:3]):
        seller.now += 1_000
        assert not isinstance(seller.try_bid(who, key, str(20 + n)), Rejection)
    before = Ledger()
    for signed in seller.log[:2]:  # the open and the first bid
        before.apply(signed)
    ledger = Ledger()
    applied = [e for signed in seller.log for e in ledger.apply(signed).applied]
    for event in reversed(applied[2:]):
        ledger.undo(event)
    assert outcome(ledger) == outcome(before)
    # The last stamp is the first bid's again: a new event may be stamped from there.
    assert ledger.stamp(seller.node_id, 0) == before.stamp(seller.node_id, 0)
