"""The hand-written Event/Bid encoders write exactly what betterproto2 writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.core.envelopes import encode_bid, encode_event
from peer.core.wire import decode_bid, decode_event
from peer.gen.auction.v1 import (
    Accept,
    AuctionId,
    Bid,
    Close,
    Event,
    Open,
    SignedBid,
)

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
i64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
blob = st.binary(max_size=70)
text = st.text(max_size=30)
auction_ids = st.builds(AuctionId, author=blob, seq=u64)
bids = st.builds(Bid, auction=st.none() | auction_ids, bidder=blob, bidder_name=text,
                 amount=text, currency=text, nonce=u64, time_ms=i64)
signed_bids = st.builds(SignedBid, bid=blob, signature=blob)
bodies = st.one_of(
    st.builds(lambda o: {"open": o}, st.builds(Open, item=text, start_amount=text,
                                                currency=text, ends_at_ms=i64, extend_ms=i64,
                                                min_increment=text, reserve=text,
                                                sealed_reserve=blob, sealed_reserve_box=blob)),
    st.builds(lambda a: {"accept": a}, st.builds(Accept, bid=st.none() | signed_bids)),
    st.builds(lambda c: {"close": c}, st.builds(Close, auction=st.none() | auction_ids,
                                                 reserve=text, reserve_key=blob)),
    st.just({}),
)


@given(author=blob, seq=u64, prev=blob, time_ms=i64, name=text, body=bodies)
def test_event_bytes_match_betterproto2(author: bytes, seq: int, prev: bytes, time_ms: int,
                                        name: str, body: dict[str, object]) -> None:
    event = Event(author=author, seq=seq, prev=prev, time_ms=time_ms, author_name=name,
                  **body)  # type: ignore[arg-type]
    assert encode_event(event) == bytes(event)


@given(bids)
def test_bid_bytes_match_betterproto2(bid: Bid) -> None:
    assert encode_bid(bid) == bytes(bid)


def test_a_signed_accept_round_trips_through_the_strict_decoder() -> None:
    bid = Bid(auction=AuctionId(author=b"s" * 32, seq=7), bidder=b"b" * 32,
              bidder_name="Client#2", amount="80", currency="USDt", nonce=3, time_ms=-5)
    bid_bytes = encode_bid(bid)
    event = Event(author=b"s" * 32, seq=9, prev=b"p" * 32, time_ms=1_700_000_000_000,
                  author_name="Client#1",
                  accept=Accept(bid=SignedBid(bid=bid_bytes, signature=b"x" * 64)))
    fields = decode_event(encode_event(event))
    assert (fields.author, fields.seq, fields.author_name) == (b"s" * 32, 9, "Client#1")
    decoded = decode_bid(bid_bytes)
    assert (decoded.bidder, decoded.amount, decoded.nonce, decoded.time_ms) == \
        (b"b" * 32, "80", 3, -5)


def test_out_of_range_integers_are_refused() -> None:
    with pytest.raises(ValueError, match="64 bits"):
        encode_event(Event(seq=1 << 64))
