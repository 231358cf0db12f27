"""peer.core.wire: the ledger's decoders agree with betterproto2 and refuse what they must."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.core.wire import (
    AcceptBody,
    CloseBody,
    OpenBody,
    WireError,
    decode_bid,
    decode_event,
    put_varint,
    read_varint,
    varint,
    varint_size,
)
from peer.gen.auction.v1 import Accept, AuctionId, Bid, Close, Event, Open, SignedBid

u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
small_bytes = st.binary(max_size=40)
text = st.text(max_size=20)


@st.composite
def events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(["open", "accept", "close"]))
    body: dict[str, object] = {}
    if kind == "open":
        body["open"] = Open(item=draw(text), start_amount=draw(text), currency=draw(text),
                            ends_at_ms=draw(i64), extend_ms=draw(i64),
                            min_increment=draw(text), reserve=draw(text),
                            sealed_reserve=draw(small_bytes),
                            sealed_reserve_box=draw(small_bytes))
    elif kind == "accept":
        body["accept"] = Accept(bid=SignedBid(bid=draw(small_bytes), signature=draw(small_bytes)))
    else:
        body["close"] = Close(auction=AuctionId(author=draw(small_bytes), seq=draw(u64)),
                              reserve=draw(text), reserve_key=draw(small_bytes))
    return Event(author=draw(small_bytes), seq=draw(u64), prev=draw(small_bytes),
                 time_ms=draw(i64), author_name=draw(text), **body)


def body_as_betterproto_reads_it(event: Event) -> OpenBody | AcceptBody | CloseBody | None:
    """The body ``decode_event`` must return for what betterproto2 parsed, or None
    when betterproto2 found no complete body."""
    if event.open is not None:
        o = event.open
        return OpenBody(o.item, o.start_amount, o.currency, o.ends_at_ms, o.extend_ms,
                        o.min_increment, o.reserve, o.sealed_reserve, o.sealed_reserve_box)
    if event.accept is not None and event.accept.bid is not None:
        return AcceptBody(event.accept.bid.bid, event.accept.bid.signature)
    if event.close is not None and event.close.auction is not None:
        c = event.close
        return CloseBody(c.auction.author, c.auction.seq, True, c.reserve, c.reserve_key)
    return None


@settings(max_examples=200, deadline=None)
@given(events())
def test_decode_event_agrees_with_betterproto(event: Event) -> None:
    fields = decode_event(bytes(event))
    assert (fields.author, fields.seq, fields.prev, fields.time_ms, fields.author_name) == (
        event.author, event.seq, event.prev, event.time_ms, event.author_name)
    assert fields.body == body_as_betterproto_reads_it(event)


@settings(max_examples=200, deadline=None)
@given(small_bytes, u64, small_bytes, text, text, text, u64, i64, st.booleans())
def test_decode_bid_agrees_with_betterproto(author: bytes, seq: int, bidder: bytes, name: str,
                                            amount: str, currency: str, nonce: int,
                                            time_ms: int, with_auction: bool) -> None:
    auction = AuctionId(author=author, seq=seq) if with_auction else None
    bid = Bid(auction=auction, bidder=bidder, bidder_name=name, amount=amount,
              currency=currency, nonce=nonce, time_ms=time_ms)
    fields = decode_bid(bytes(bid))
    assert fields.has_auction == with_auction
    if with_auction:
        assert (fields.auction_author, fields.auction_seq) == (author, seq)
    assert (fields.bidder, fields.bidder_name, fields.amount, fields.currency, fields.nonce,
            fields.time_ms) == (bidder, name, amount, currency, nonce, time_ms)


def test_unknown_fields_are_skipped() -> None:
    data = bytes(Event(seq=3, open=Open(item="x"))) + b"\x68\x05" + b"\x72\x01z" + \
        b"\x79" + b"\x00" * 8 + b"\x7d" + b"\x00" * 4
    fields = decode_event(data)
    assert fields.seq == 3 and fields.body == OpenBody("x", "", "")


@pytest.mark.parametrize("data, why", [
    (b"\x08", "truncated"),
    (b"\x0a\x05ab", "runs past"),
    (b"\x0a\x00\x0a\x00", "more than once"),
    (b"\x10\x01\x10\x01", "more than once"),
    (b"\x0d\x00\x00\x00\x00", "wire type"),
    (b"\x2a\x02\xff\xfe", "UTF-8"),
    (b"\x10" + b"\xff" * 10 + b"\x01", "longer than 10"),
    (b"\x10" + b"\xff" * 9 + b"\x7f", "64 bits"),
    (b"\x0b", "wire type"),
    (b"\x00", "field number 0"),
    (b"\x79\x00", "truncated fixed"),
])
def test_malformed(data: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        decode_event(data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), events().map(bytes),
                 st.tuples(events().map(bytes), st.integers(0, 199), st.integers(0, 255)).map(
                     lambda t: t[0][:t[1]] + bytes([t[2]]) + t[0][t[1] + 1:])))
def test_junk_raises_only_wire_error(data: bytes) -> None:
    # What the ledger's decoders accept, betterproto2 reads with the same values.
    with contextlib.suppress(WireError):
        fields = decode_event(data)
        event = Event.parse(data)
        assert (fields.author, fields.seq, fields.prev, fields.time_ms, fields.author_name) == (
            event.author, event.seq, event.prev, event.time_ms, event.author_name)
        expected = body_as_betterproto_reads_it(event)
        if expected is not None:
            assert fields.body == expected
    with contextlib.suppress(WireError):
        bid = decode_bid(data)
        parsed = Bid.parse(data)
        assert (bid.bidder, bid.bidder_name, bid.amount, bid.currency, bid.nonce,
                bid.time_ms, bid.has_auction) == (
            parsed.bidder, parsed.bidder_name, parsed.amount, parsed.currency, parsed.nonce,
            parsed.time_ms, parsed.auction is not None)


@given(u64)
def test_varint_writer_and_reader_agree_with_betterproto(value: int) -> None:
    # AuctionId{seq = 2}: its key (0x10) then the varint; proto3 leaves 0 out.
    written = varint(value)
    assert bytes(AuctionId(seq=value)) == (b"\x10" + written if value else b"")
    assert len(written) == varint_size(value)
    out = bytearray(b"x")
    put_varint(out, value)
    assert bytes(out) == b"x" + written
    assert read_varint(bytes(out), 1, len(out)) == (value, len(out))
