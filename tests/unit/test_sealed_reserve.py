"""Sealed reserves: hidden in the Open, revealed in the Close, checked by every node."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.core.identity import Identity
from peer.core.ledger import Ledger
from peer.core.rules import Rejection
from peer.core.sealed_reserve import (
    BOX_BYTES,
    Reveal,
    Sealed,
    commitment,
    open_box,
    seal,
    verify_reveal,
)
from peer.core.signed_events import sign_event
from peer.gen.auction.v1 import Close, Event, Open, RejectCode, SignedEvent
from peer.net.views import auction_view
from tests.unit.timed_support import T0, ClockedAuthor

C1 = Identity.from_seed(b"\x01" * 32, "Client#1")
C2 = Identity.from_seed(b"\x02" * 32, "Client#2")


def test_only_the_sellers_key_opens_the_box_and_the_reveal_checks() -> None:
    sealed = seal(C1, "60")
    assert len(sealed.commitment) == 32 and len(sealed.box) == BOX_BYTES
    reveal = open_box(C1, sealed)
    assert reveal is not None and reveal.reserve == "60"
    assert verify_reveal(sealed.commitment, reveal)
    assert open_box(C2, sealed) is None  # another key reads noise, which fails the check
    assert open_box(C1, Sealed(sealed.commitment, sealed.box[:-1])) is None
    assert not verify_reveal(sealed.commitment, Reveal("59", reveal.key))
    assert not verify_reveal(sealed.commitment, Reveal("60", bytes(32)))
    assert not verify_reveal(sealed.commitment, Reveal("60", reveal.key[:31]))
    # Hiding: the same reserve sealed twice looks unrelated.
    assert seal(C1, "60").commitment != sealed.commitment


@given(st.binary(max_size=BOX_BYTES + 4), st.binary(max_size=40), st.text(max_size=40))
def test_junk_boxes_and_reveals_are_refused_never_a_crash(box: bytes, key: bytes,
                                                          reserve: str) -> None:
    sealed = Sealed(commitment(bytes(32), "1"), box)
    assert open_box(C1, sealed) is None or len(box) == BOX_BYTES
    assert verify_reveal(sealed.commitment, Reveal(reserve, key)) == (
        key == bytes(32) and reserve == "1")


def _sealed_auction(reserve: str, bids: list[str]) -> ClockedAuthor:
    seller = ClockedAuthor(C1)
    key = seller.open("Pic#5", "10", ends_in=5_000, sealed=reserve)
    for amount in bids:
        seller.now += 10
        assert isinstance(seller.try_bid(C2, key, amount), SignedEvent)
    return seller


def test_before_the_close_nobody_but_the_seller_knows_the_reserve() -> None:
    seller = _sealed_auction("60", ["70"])
    node = Ledger()
    notes = [n for e in seller.log for n in node.apply(e).notifications]
    assert notes[0].text.endswith(", sealed reserve")
    (auction,) = node.auctions()
    assert not auction.reserve_known and auction.reserve is None
    assert not auction.reserve_met  # not known to be met
    view = auction_view(auction, T0 + 10_000)
    assert view.reserve_sealed and view.reserve == "" and not view.reserve_met
    assert b"60" not in seller.log[0].event


@pytest.mark.parametrize(("bids", "text", "met"), [
    (["70"], "Client#1->Pic#5 ended: Client#2 -> 70 USDt", True),
    (["50"], "Client#1->Pic#5 ended: no sale (sealed reserve 60 USDt not met; best 50 USDt"
             " by Client#2)", False),
])
def test_the_close_reveals_it_and_every_node_judges_the_same(bids: list[str], text: str,
                                                             met: bool) -> None:
    seller = _sealed_auction("60", bids)
    seller.now = T0 + 6_000
    seller.close(seller.ledger.auctions(include_closed=True)[0].key)
    node = Ledger()
    notes = [n for e in seller.log for n in node.apply(e).notifications]
    assert notes[-1].text == text
    (auction,) = node.auctions(include_closed=True)
    assert auction.reserve == Decimal(60) and auction.reserve_met == met
    view = auction_view(auction)
    assert view.reserve == "60" and view.reserve_sealed


def _forged_close(seller: ClockedAuthor, **reveal: object) -> Rejection | None:
    key = seller.ledger.auctions()[0].key
    forged = seller.forge(T0 + 6_000, close=Close(auction=key.message(), **reveal))
    node = Ledger()
    for signed in seller.log:
        assert node.apply(signed).rejection is None
    return node.apply(forged).rejection


def test_a_close_that_does_not_reveal_the_committed_reserve_is_refused_everywhere() -> None:
    seller = _sealed_auction("60", ["50"])
    auction = seller.ledger.auctions()[0]
    reveal = open_box(C1, Sealed(auction.terms.sealed_reserve, auction.terms.sealed_box))
    assert reveal is not None
    for forged in ({}, {"reserve": "40", "reserve_key": reveal.key},
                   {"reserve": "60", "reserve_key": bytes(32)},
                   {"reserve": "abc", "reserve_key": reveal.key},
                   {"reserve": "60"}):
        rejection = _forged_close(seller, **forged)
        assert rejection is not None and rejection.code == RejectCode.BAD_EVENT, forged
    assert _forged_close(seller, reserve="60", reserve_key=reveal.key) is None


def test_a_reveal_on_an_auction_without_a_sealed_reserve_is_refused() -> None:
    seller = ClockedAuthor(C1)
    seller.open("Pic#6", "10", reserve="60")
    rejection = _forged_close(seller, reserve="1", reserve_key=bytes(32))
    assert rejection is not None and rejection.code == RejectCode.BAD_EVENT


@pytest.mark.parametrize(("sealed", "box", "public"), [
    (bytes(31), b"", ""), (bytes(33), b"", ""), (b"", bytes(48), ""),
    (bytes(32), bytes(BOX_BYTES + 1), ""), (bytes(32), b"", "60"),
])
def test_bad_sealed_terms_are_refused(sealed: bytes, box: bytes, public: str) -> None:
    event = Event(author=C1.node_id, seq=1, time_ms=T0, author_name=C1.name,
                  open=Open(item="Pic", start_amount="1", currency="USDt", reserve=public,
                            sealed_reserve=sealed, sealed_reserve_box=box))
    rejection = Ledger().apply(sign_event(C1, event)).rejection
    assert rejection is not None and rejection.code == RejectCode.BAD_TERMS
