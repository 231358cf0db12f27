"""The hand-planned encoder writes exactly what betterproto2 writes, for any field values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from peer.core.fast_encode import FAST_ENCODERS
from peer.gen.auction.v1 import (
    AuctionState,
    AuctionView,
    BidView,
    CloseReason,
    ControlReply,
    ListReply,
    Notification,
    NotificationKind,
    PlaceBidReply,
    RejectCode,
    Rejection,
    SignedEvent,
)
from peer.net.codec import LimitedCodec

_int64 = st.integers(-(1 << 63), (1 << 63) - 1)
_text = st.text(max_size=12)
_bytes = st.binary(max_size=40)

bid_views = st.builds(BidView, bidder=_bytes, bidder_name=_text, amount=_text,
                      currency=_text, time_ms=_int64)
_AUCTION_FIELDS = dict(
    id=_text, seller=_bytes, seller_name=_text, item=_text,
    start_amount=_text, currency=_text, state=st.sampled_from(list(AuctionState)),
    bids=st.lists(bid_views, max_size=3), opened_ms=_int64, closed_ms=_int64,
    ends_at_ms=_int64, announced_ends_at_ms=_int64, extend_ms=_int64,
    min_increment=_text, reserve=_text, reserve_met=st.booleans(),
    close_reason=st.sampled_from(list(CloseReason)), reserve_sealed=st.booleans(),
    bid_count=_int64, first_bid_index=_int64, best=st.none() | bid_views)
auction_views = st.builds(AuctionView, **_AUCTION_FIELDS)


def test_every_field_of_an_auction_view_is_drawn() -> None:
    # A field added to the proto must be added above, or the tests below miss it.
    assert set(_AUCTION_FIELDS) == set(AuctionView._betterproto.meta_by_field_name)
rejections = st.builds(Rejection, code=st.sampled_from(list(RejectCode)), reason=_text)
control_replies = st.one_of(
    st.builds(ControlReply, auction=auction_views, accepted_bid=st.none() | bid_views),
    st.builds(ControlReply, rejected=rejections),
    st.just(ControlReply()))
place_bid_replies = st.one_of(
    st.builds(PlaceBidReply, accepted=st.builds(SignedEvent, event=_bytes, signature=_bytes)),
    st.builds(PlaceBidReply, rejected=rejections, rejection_signature=_bytes))
notifications = st.builds(
    Notification, kind=st.sampled_from(list(NotificationKind)),
    auction=st.none() | auction_views, bid=st.none() | bid_views, peer=_bytes,
    peer_name=_text, text=_text)


@given(control_replies)
def test_control_reply(message: ControlReply) -> None:
    assert FAST_ENCODERS[ControlReply](message) == bytes(message)
    assert LimitedCodec().encode(message, ControlReply) == bytes(message)


@given(place_bid_replies)
def test_place_bid_reply(message: PlaceBidReply) -> None:
    assert FAST_ENCODERS[PlaceBidReply](message) == bytes(message)


@given(st.lists(auction_views, max_size=3))
def test_list_reply(auctions: list[AuctionView]) -> None:
    message = ListReply(auctions=auctions)
    assert FAST_ENCODERS[ListReply](message) == bytes(message)


@given(notifications)
def test_notification(message: Notification) -> None:
    assert FAST_ENCODERS[Notification](message) == bytes(message)


def test_unknown_fields_are_kept() -> None:
    known = bytes(ControlReply(rejected=Rejection(code=RejectCode.BID_TOO_LOW, reason="x")))
    extra = known + b"\xa8\x06\x07"  # field 101, varint 7: from a newer node
    message = ControlReply.parse(extra)
    assert FAST_ENCODERS[ControlReply](message) == bytes(message) == extra

