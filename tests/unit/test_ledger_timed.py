"""peer.core.ledger, auctions that end on time: end, anti-sniping, increment, reserve, old logs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from peer.core.auctions import BidAccepted, Closed, Opened, Terms
from peer.core.envelopes import encode_event
from peer.core.identity import Identity
from peer.core.ledger import Ledger
from peer.core.rules import Rejection, format_duration, format_time, parse_duration
from peer.core.signed_events import MAX_DURATION_MS, MAX_EXTEND_MS, sign_event
from peer.core.wire import OpenBody, decode_event
from peer.gen.auction.v1 import Accept, Close, Event, Open, RejectCode, SignedEvent
from tests.unit.timed_support import T0, ClockedAuthor, outcome

C1 = Identity.from_seed(b"\x01" * 32, "Client#1")
C2 = Identity.from_seed(b"\x02" * 32, "Client#2")
C3 = Identity.from_seed(b"\x03" * 32, "Client#3")


def replay(log: list[SignedEvent]) -> tuple[Ledger, list[Rejection | None]]:
    """A fresh node fed ``log`` in order; the rejection of each event (None: applied)."""
    ledger = Ledger()
    return ledger, [ledger.apply(e).rejection for e in log]


def test_open_carries_its_terms_to_every_node() -> None:
    seller = ClockedAuthor(C1)
    key = seller.open("Pic#3", "50", ends_in=30_000, extend=10_000, increment="1",
                      reserve="60")
    node, rejections = replay(seller.log)
    assert rejections == [None]
    auction = node.auction(key)
    assert auction is not None
    assert auction.terms == Terms(T0 + 30_000, 10_000, Decimal(1), Decimal(60))
    assert auction.ends_ms == T0 + 30_000
    note = node.apply(seller.log[0]).notifications  # duplicate: nothing new
    assert note == []
    opened = Ledger().apply(seller.log[0]).notifications[0]
    assert isinstance(opened, Opened)
    assert opened.text.startswith("Client#1 opened Pic#3 at 50 USDt, ends ")
    assert format_time(T0 + 30_000) in opened.text
    assert "last 10s extends it" in opened.text and "reserve 60 USDt" in opened.text


def test_a_bid_in_the_last_window_moves_the_end_on_every_node() -> None:
    seller = ClockedAuthor(C1)
    key = seller.open("Pic#3", "50", ends_in=30_000, extend=10_000)
    seller.now = T0 + 5_000  # 25 s left: outside the window, the end stays
    assert isinstance(seller.try_bid(C2, key, "50"), SignedEvent)
    seller.now = T0 + 25_000  # 5 s left: the end moves to 25 s + 10 s
    assert isinstance(seller.try_bid(C3, key, "51"), SignedEvent)
    node = Ledger()
    notes = [n for e in seller.log for n in node.apply(e).notifications]
    first, second = notes[1], notes[2]
    assert isinstance(first, BidAccepted) and first.extended_from_ms == 0
    assert "extended" not in first.text
    assert isinstance(second, BidAccepted) and second.extended_from_ms == T0 + 30_000
    assert second.auction.ends_ms == T0 + 35_000
    assert "end extended by 5s to" in second.text
    assert outcome(node) == outcome(seller.ledger)
    # The moved end is the one that counts: 34.9 s is still open, 35 s is not.
    seller.now = T0 + 34_999
    assert isinstance(seller.try_bid(C2, key, "52"), SignedEvent)
    assert seller.ledger.auction(key).ends_ms == T0 + 44_999  # type: ignore[union-attr]


def test_a_bid_at_or_after_the_end_is_refused_by_the_seller() -> None:
    seller = ClockedAuthor(C1)
    key = seller.open("Pic#3", "50", ends_in=3_000)
    seller.now = T0 + 3_000
    refused = seller.try_bid(C2, key, "60")
    assert isinstance(refused, Rejection)
    assert refused.code == RejectCode.AUCTION_ENDED
    assert format_time(T0 + 3_000) in refused.reason


def test_a_late_accept_is_a_broken_rule_on_every_node() -> None:
    seller = ClockedAuthor(C1)
    key = seller.open("Pic#3", "50", ends_in=3_000)
    late = seller.forge(T0 + 3_000, accept=Accept(bid=seller.signed_bid(C2, key, "60")))
    node, rejections = replay([*seller.log, late])
    assert rejections[0] is None
    assert rejections[1] is not None and rejections[1].code == RejectCode.AUCTION_ENDED
    assert node.auction(key).bids == []  # type: ignore[union-attr]
    # Arriving before the Open (held behind the gap), it is refused when released.
    node = Ledger()
    assert node.apply(late).held
    assert node.apply(seller.log[0]).rejection is None
    assert node.dropped_count == 1 and node.heads() == {C1.node_id: 1}


def test_a_backdated_accept_in_a_timed_auction_is_refused() -> None:
    seller = ClockedAuthor(C1)
    key = seller.open("Pic#3", "50", ends_in=60_000)
    seller.now = T0 + 50_000
    other = seller.open("Pic#4", "5")  # the seller logs something at 50 s
    backdated = seller.forge(T0 + 10_000, accept=Accept(bid=seller.signed_bid(C2, key, "60")))
    _, rejections = replay([*seller.log, backdated])
    assert rejections[-1] is not None and rejections[-1].code == RejectCode.BAD_EVENT
    assert "before its seller's previous event" in rejections[-1].reason
    # Untimed auctions keep today's rules: stamps may go back (old logs load unchanged).
    untimed = seller.forge(T0 + 10_000, accept=Accept(bid=seller.signed_bid(C2, other, "5")))
    _, rejections = replay([*seller.log, untimed])
    assert rejections[-1] is None


def test_stamps_never_go_back_even_when_the_clock_does() -> None:
    seller = ClockedAuthor(C1)
    seller.now = T0 + 10_000
    key = seller.open("Pic#3", "50", ends_in=60_000)
    seller.now = T0  # the clock stepped back 10 s
    assert seller.ledger.stamp(C1.node_id, seller.now) == T0 + 10_000
    assert isinstance(seller.try_bid(C2, key, "50"), SignedEvent)
    seller.close(key)
    _, rejections = replay(seller.log)
    assert rejections == [None, None, None]


def test_the_minimum_increment_applies_after_the_first_bid_and_is_named() -> None:
    seller = ClockedAuthor(C1)
    key = seller.open("Pic#3", "50", increment="1")
    assert isinstance(seller.try_bid(C2, key, "50"), SignedEvent)  # the start price is enough
    low = seller.try_bid(C3, key, "50.5")
    assert isinstance(low, Rejection) and low.code == RejectCode.BID_TOO_LOW
    assert low.reason == ("best is 50 USDt by Client#2; the minimum increment is 1 USDt,"
                          " so at least 51 USDt")
    assert isinstance(seller.try_bid(C3, key, "51"), SignedEvent)


def test_an_accept_below_the_increment_is_refused_by_every_node() -> None:
    seller = ClockedAuthor(C1)
    key = seller.open("Pic#3", "50", increment="1")
    seller.try_bid(C2, key, "50")
    cheat = seller.forge(T0, accept=Accept(bid=seller.signed_bid(C3, key, "50.5")))
    _, rejections = replay([*seller.log, cheat])
    assert rejections[-1] is not None and rejections[-1].code == RejectCode.BID_TOO_LOW


@pytest.mark.parametrize(("bids", "close_at", "text", "winner"), [
    ([], 1_000, "Client#1->Pic#3 closed with no bids", None),
    (["55"], 1_000, "Client#1->Pic#3 closed: no sale (reserve not met; best 55 USDt by"
                    " Client#2)", None),
    (["55", "60"], 1_000, "Client#1->Pic#3 closed: Client#3 -> 60 USDt", "60"),
    (["55"], 30_000, "Client#1->Pic#3 ended: no sale (reserve not met; best 55 USDt by"
                     " Client#2)", None),
    (["55", "61"], 30_000, "Client#1->Pic#3 ended: Client#3 -> 61 USDt", "61"),
    ([], 31_000, "Client#1->Pic#3 ended with no bids", None),
])
def test_close_says_ended_or_closed_and_whether_the_reserve_was_met(
        bids: list[str], close_at: int, text: str, winner: str | None) -> None:
    seller = ClockedAuthor(C1)
    key = seller.open("Pic#3", "50", ends_in=30_000, reserve="60")
    for who, amount in zip((C2, C3), bids, strict=False):
        seller.now += 10
        # Bids below the reserve are accepted: they may still lose to it.
        assert isinstance(seller.try_bid(who, key, amount), SignedEvent)
    seller.now = T0 + close_at
    seller.close(key)
    node = Ledger()
    notes = [n for e in seller.log for n in node.apply(e).notifications]
    closed = notes[-1]
    assert isinstance(closed, Closed)
    assert closed.text == text
    assert (closed.winner.amount if closed.winner else None) == (
        Decimal(winner) if winner else None)
    auction = node.auction(key)
    assert auction is not None
    assert auction.ended_by_time == (close_at >= 30_000)
    assert auction.reserve_met == (winner is not None)


def test_an_untimed_auction_keeps_todays_texts() -> None:
    seller = ClockedAuthor(C1)
    key = seller.open("Pic#1", "75")
    seller.try_bid(C2, key, "80")
    seller.now += 10**9  # however late: no end was announced
    assert isinstance(seller.try_bid(C3, key, "81"), SignedEvent)
    seller.close(key)
    node = Ledger()
    notes = [n for e in seller.log for n in node.apply(e).notifications]
    assert notes[0].text == "Client#1 opened Pic#1 at 75 USDt"
    assert notes[-1].text == "Client#1->Pic#1 closed: Client#3 -> 81 USDt"


@pytest.mark.parametrize(("ends_at", "extend", "increment", "reserve", "why"), [
    (T0, 0, "", "", "not after the open time"),
    (T0 - 1, 0, "", "", "not after the open time"),
    (-5, 0, "", "", "not after the open time"),
    (T0 + MAX_DURATION_MS + 1, 0, "", "", "days away"),
    (0, 1_000, "", "", "needs an end time"),
    (T0 + 1_000, -1, "", "", "extension window"),
    (T0 + 1_000, MAX_EXTEND_MS + 1, "", "", "extension window"),
    (0, 0, "0", "", "minimum increment"),
    (0, 0, "1e3", "", "minimum increment"),
    (0, 0, "", "-1", "reserve"),
])
def test_bad_terms_are_refused_before_authoring_and_from_peers(
        ends_at: int, extend: int, increment: str, reserve: str, why: str) -> None:
    rejection = Ledger().check_open("Pic", "1", "USDt", time_ms=T0, ends_at_ms=ends_at,
                                    extend_ms=extend, min_increment=increment, reserve=reserve)
    assert rejection is not None and rejection.code == RejectCode.BAD_TERMS
    assert why in rejection.reason
    event = Event(author=C1.node_id, seq=1, time_ms=T0, author_name=C1.name,
                  open=Open(item="Pic", start_amount="1", currency="USDt", ends_at_ms=ends_at,
                            extend_ms=extend, min_increment=increment, reserve=reserve))
    refused = Ledger().apply(sign_event(C1, event)).rejection
    assert refused is not None and refused.code == RejectCode.BAD_TERMS


def test_an_open_written_before_terms_existed_loads_unchanged() -> None:
    # The exact bytes of Open{item, start_amount, currency} as the old encoder wrote them.
    old_open = b"\x0a\x05Pic#1\x12\x0275\x1a\x04USDt"
    event = Event(author=C1.node_id, seq=1, time_ms=T0, author_name=C1.name,
                  open=Open(item="Pic#1", start_amount="75", currency="USDt"))
    data = encode_event(event)
    assert data.endswith(b"\x52" + bytes([len(old_open)]) + old_open)
    fields = decode_event(data)
    assert fields.body == OpenBody("Pic#1", "75", "USDt", 0, 0, "", "")
    ledger = Ledger()
    assert ledger.apply(SignedEvent(event=data, signature=C1.sign(data))).rejection is None
    (auction,) = ledger.auctions()
    assert auction.terms == Terms() and not auction.terms.timed and auction.ends_ms == 0
    # With no end, nothing is ever "ended": the seller closes it as before.
    assert not auction.has_ended(T0 + 10**12)


def test_close_of_a_timed_auction_may_not_be_stamped_back() -> None:
    seller = ClockedAuthor(C1)
    key = seller.open("Pic#3", "50", ends_in=3_000)
    seller.now = T0 + 5_000
    seller.open("Pic#4", "1")
    backdated = seller.forge(T0 + 1, close=Close(auction=key.message()))
    _, rejections = replay([*seller.log, backdated])
    assert rejections[-1] is not None and rejections[-1].code == RejectCode.BAD_EVENT


@pytest.mark.parametrize(("text", "ms"), [
    ("30s", 30_000), ("10m", 600_000), ("1h30m", 5_400_000), ("1d", 86_400_000),
    ("500ms", 500), ("2m5s", 125_000), (" 3S ", 3_000),
])
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "0s", "3", "s", "1.5s", "-3s", "3 s", "3x", "1" * 50 + "s"])
def test_parse_duration_refuses(text: str) -> None:
    assert isinstance(parse_duration(text), str)


def test_format_duration_and_time() -> None:
    assert [format_duration(ms) for ms in (500, 1_000, 1_500, 90_000, 3_600_000, 90_061_000)] == [
        "500ms", "1s", "1.5s", "1m30s", "1h", "1d1h1m1s"]
    assert format_time(0) == "1970-01-01 00:00:00 UTC"
    assert "ms since the epoch" in format_time(2**62)
