"""The hand-written SyncReply/PushRequest codec is byte-compatible with betterproto2."""

from __future__ import annotations

import contextlib

import pytest
from grpclib import GRPCError
from grpclib.const import Status
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.core.envelopes import (
    EnvelopeError,
    decode_push,
    decode_sync_reply,
    encode_push,
    encode_sync_reply,
)
from peer.gen.auction.v1 import Head, PushRequest, SignedEvent, SyncReply, SyncRequest
from peer.net.codec import MAX_MESSAGE_BYTES, LimitedCodec

signed_events = st.lists(
    st.builds(SignedEvent, event=st.binary(max_size=300), signature=st.binary(max_size=70)),
    max_size=20)


@settings(max_examples=200, deadline=None)
@given(signed_events)
def test_sync_reply_matches_betterproto2_both_ways(events: list[SignedEvent]) -> None:
    message = SyncReply(events=events)
    assert encode_sync_reply(message) == bytes(message)
    assert decode_sync_reply(bytes(message)) == SyncReply.parse(bytes(message))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), signed_events)
def test_push_matches_betterproto2_both_ways(sender: bytes, events: list[SignedEvent]) -> None:
    message = PushRequest(sender=sender, events=events)
    assert encode_push(message) == bytes(message)
    assert decode_push(bytes(message)) == PushRequest.parse(bytes(message))


def test_unknown_fields_are_skipped() -> None:
    # A future sender may add fields (varint 3, fixed 4, bytes 5); old readers skip them.
    extra = b"\x18\x96\x01" + b"\x25\x01\x02\x03\x04" + b"\x2a\x02hi"
    data = bytes(PushRequest(sender=b"s", events=[SignedEvent(event=b"e")])) + extra
    assert decode_push(data) == PushRequest(sender=b"s", events=[SignedEvent(event=b"e")])


@pytest.mark.parametrize("junk", [
    b"\x0a",                 # tag without a length
    b"\x0a\x05abc",          # length past the end
    b"\x08\x01",             # events field as a varint
    b"\x0a\x02\x08\x01",     # SignedEvent.event as a varint
    b"\x0b",                 # wire type 3 (groups)
    b"\x00\x00",             # field number 0
    b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # varint over 10 bytes
])
def test_malformed_envelopes_raise_envelope_error(junk: bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode_sync_reply(junk)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_envelope_error(data: bytes) -> None:
    # Whatever the hand-written decoder accepts, betterproto2 reads the same way, and
    # it encodes back to bytes that decode to the same message.
    with contextlib.suppress(EnvelopeError):
        reply = decode_sync_reply(data)
        assert reply == SyncReply.parse(data)
        assert decode_sync_reply(encode_sync_reply(reply)) == reply
    with contextlib.suppress(EnvelopeError):
        push = decode_push(data)
        assert push == PushRequest.parse(data)
        assert decode_push(encode_push(push)) == push


def test_codec_uses_fast_path_and_maps_errors_to_grpc_statuses() -> None:
    codec = LimitedCodec()
    reply = SyncReply(events=[SignedEvent(event=b"e", signature=b"s")])
    assert codec.encode(reply, SyncReply) == bytes(reply)
    assert codec.decode(bytes(reply), SyncReply) == reply
    request = SyncRequest(heads=[Head(author=b"a", seq=3)])
    assert codec.decode(codec.encode(request, SyncRequest), SyncRequest) == request
    with pytest.raises(GRPCError) as bad:
        codec.decode(b"\x0a\x05abc", SyncReply)
    assert bad.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(GRPCError) as big:
        codec.decode(b"\x00" * (MAX_MESSAGE_BYTES + 1), SyncReply)
    assert big.value.status == Status.RESOURCE_EXHAUSTED
