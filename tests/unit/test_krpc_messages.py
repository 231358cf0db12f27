"""The sans-IO KRPC codec: round trips, wire format, strict validation, fuzzing."""

from __future__ import annotations

import hashlib
from typing import Any

import bencode2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localgrape.krpc import (
    AnnouncePeer,
    DropReason,
    ErrorMessage,
    FindNode,
    GetItem,
    GetPeers,
    KrpcError,
    Message,
    NodeInfo,
    PeerInfo,
    Ping,
    PutItem,
    QueryMessage,
    Response,
    ResponseMessage,
    decode,
    decode_nodes,
    decode_peer,
    encode,
    encode_nodes,
    encode_peer,
    immutable_target,
    mutable_target,
    signature_data,
)

ID = bytes(range(20))
OTHER = b"\xff" * 20
T = b"\x00\x01"

MESSAGES: list[Message] = [
    QueryMessage(T, Ping(ID)),
    QueryMessage(T, FindNode(ID, OTHER)),
    QueryMessage(T, FindNode(ID, b"")),
    QueryMessage(b"tid-of-any-length", GetPeers(ID, b"svc:name")),
    QueryMessage(T, GetPeers(ID, b"x" * 300)),
    QueryMessage(T, AnnouncePeer(ID, b"svc", 5001, b"tok")),
    QueryMessage(T, AnnouncePeer(ID, b"svc", 0, b"tok", implied_port=True)),
    QueryMessage(T, GetItem(ID, OTHER)),
    QueryMessage(T, GetItem(ID, OTHER, seq=7)),
    QueryMessage(T, PutItem(ID, b"tok", b"hello")),
    QueryMessage(T, PutItem(ID, b"tok", [1, b"a", {b"k": 2}])),
    QueryMessage(T, PutItem(ID, b"tok", b"m", k=b"k" * 32, sig=b"s" * 64, seq=3,
                            salt=b"salt", cas=2)),
    QueryMessage(T, Ping(ID), client_version=b"LG01", read_only=True),
    ResponseMessage(T, Response(ID)),
    ResponseMessage(T, Response(ID, nodes=(NodeInfo(OTHER, "127.0.0.1", 20001),
                                           NodeInfo(ID, "10.1.2.3", 65535)))),
    ResponseMessage(T, Response(ID, nodes=())),
    ResponseMessage(T, Response(ID, token=b"t" * 20,
                                values=(PeerInfo("127.0.0.1", 5001), PeerInfo("1.2.3.4", 1)))),
    ResponseMessage(T, Response(ID, token=b"t", v=b"hello")),
    ResponseMessage(T, Response(ID, token=b"t", v=b"x", k=b"k" * 32, sig=b"s" * 64, seq=-1)),
    ResponseMessage(T, Response(ID), requester=PeerInfo("127.0.0.1", 4000)),
    ErrorMessage(T, 203, "cannot `announce_peer` with bad token"),
    ErrorMessage(T, 201, "ünïcode", client_version=b"v"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    assert decode(encode(message)) == message


def test_ping_bytes_match_k_rpc() -> None:
    # k-rpc-socket `query`: {t: 2-byte tid, y: 'q', q, a}; JS bencode sorts keys.
    assert encode(QueryMessage(T, Ping(ID))) == (
        b"d1:ad2:id20:" + ID + b"e1:q4:ping1:t2:\x00\x011:y1:qe")


def test_error_bytes_match_k_rpc() -> None:
    # k-rpc-socket `error`: e = [code, message].
    assert encode(ErrorMessage(b"aa", 203, "bad")) == b"d1:eli203e3:bade1:t2:aa1:y1:ee"


def test_announce_arguments_match_bittorrent_dht() -> None:
    # bittorrent-dht `announce`: {id, token, info_hash, port, implied_port: port ? 0 : 1}.
    raw = bencode2.bdecode(encode(QueryMessage(T, AnnouncePeer(ID, b"svc", 0, b"tk", True))))
    assert raw[b"a"] == {b"id": ID, b"implied_port": 1, b"info_hash": b"svc", b"port": 0,
                         b"token": b"tk"}


def test_compact_formats() -> None:
    assert encode_peer(PeerInfo("127.0.0.1", 5001)) == b"\x7f\x00\x00\x01\x13\x89"
    assert decode_peer(b"\x7f\x00\x00\x01\x13\x89") == PeerInfo("127.0.0.1", 5001)
    node = NodeInfo(ID, "192.168.0.1", 6881)
    packed = encode_nodes([node])
    assert len(packed) == 26 and decode_nodes(packed) == (node,)
    # k-rpc `parseNodes` skips port 0 entries.
    assert decode_nodes(encode_nodes([NodeInfo(ID, "1.2.3.4", 0), node])) == (node,)
    for bad in (lambda: encode_peer(PeerInfo("::1", 1)), lambda: encode_peer(PeerInfo("a", 1)),
                lambda: encode_peer(PeerInfo("1.2.3.4", 70000)),
                lambda: encode_nodes([NodeInfo(b"short", "1.2.3.4", 1)]),
                lambda: decode_peer(b"12345"), lambda: decode_nodes(b"x" * 27)):
        with pytest.raises(ValueError):
            bad()


def test_bep44_helpers() -> None:
    # grape-http-api.md section 5: put "hello" -> sha1("5:hello").
    assert immutable_target(b"hello").hex() == "e28910ea0adb94dd45ced75fbff3e135c01bc437"
    assert immutable_target(5) == hashlib.sha1(b"i5e").digest()
    assert mutable_target(b"k" * 32, b"salt") == hashlib.sha1(b"k" * 32 + b"salt").digest()
    assert mutable_target(b"k" * 32) == hashlib.sha1(b"k" * 32).digest()
    # BEP 44 test vector layout; bittorrent-dht `encodeSigData`.
    assert signature_data(b"Hello World!", 1) == b"3:seqi1e1:v12:Hello World!"
    assert signature_data(b"Hello World!", 1, b"foobar") == (
        b"4:salt6:foobar3:seqi1e1:v12:Hello World!")


def q(args: dict[bytes, Any] | Any, method: bytes = b"ping", **extra: Any) -> bytes:
    body: dict[bytes, Any] = {b"t": b"tt", b"y": b"q", b"q": method, b"a": args}
    body.update({k.encode(): v for k, v in extra.items()})
    return bencode2.bencode({k: v for k, v in body.items() if v is not None})


MALFORMED: list[tuple[bytes, DropReason, tuple[int, str] | None]] = [
    (b"", DropReason.BAD_BENCODE, None),
    (b"d1:ai1e", DropReason.BAD_BENCODE, None),
    (b"d1:bi1e1:ai1ee", DropReason.BAD_BENCODE, None),  # unsorted keys
    (b"i" + b"9" * 5000 + b"e", DropReason.BAD_BENCODE, None),  # int digit limit
    (b"l" * 5000, DropReason.BAD_BENCODE, None),  # too deep
    (b"x" * 20000, DropReason.TOO_LARGE, None),
    (b"le", DropReason.NOT_A_DICT, None),
    (b"4:spam", DropReason.NOT_A_DICT, None),
    (b"d1:y1:qe", DropReason.BAD_TRANSACTION_ID, None),
    (b"d1:ti1e1:y1:qe", DropReason.BAD_TRANSACTION_ID, None),
    (b"d1:t2:tt1:y1:xe", DropReason.BAD_TYPE, None),
    (b"d1:t2:tt1:vi1e1:y1:re", DropReason.BAD_EXTENSION, None),
    (q({b"id": ID}, method=None), DropReason.BAD_METHOD,  # type: ignore[arg-type]
     (203, "Protocol Error, q is not a string")),
    (q([1]), DropReason.BAD_ARGUMENTS, None),  # `if (!query.a) return`
    (q({b"id": ID}, ro=b"x"), DropReason.BAD_EXTENSION, None),
    (q({}), DropReason.BAD_ARGUMENTS, (203, "Protocol Error, a.id is missing")),
    (q({b"id": b"short"}), DropReason.BAD_ARGUMENTS,
     (203, "Protocol Error, id must be 20 bytes")),
    (q({b"id": 5}), DropReason.BAD_ARGUMENTS, (203, "Protocol Error, id is not a string")),
    (q({b"id": ID}, method=b"vote"), DropReason.UNKNOWN_METHOD, (204, "Method Unknown")),
    (q({b"id": ID}, method=b"find_node"), DropReason.BAD_ARGUMENTS,
     (203, "`find_node` missing required `a.target` field")),
    (q({b"id": ID}, method=b"get_peers"), DropReason.BAD_ARGUMENTS,
     (203, "`get_peers` missing required `a.info_hash` field")),
    (q({b"id": ID, b"info_hash": 1}, method=b"get_peers"), DropReason.BAD_ARGUMENTS,
     (203, "Protocol Error, info_hash is not a string")),
    (q({b"id": ID, b"info_hash": b"x", b"port": 0, b"token": b"t"}, method=b"announce_peer"),
     DropReason.BAD_ARGUMENTS, None),
    (q({b"id": ID, b"info_hash": b"x", b"port": 65536, b"token": b"t"},
       method=b"announce_peer"), DropReason.BAD_ARGUMENTS, None),
    (q({b"id": ID, b"info_hash": b"x", b"port": b"80", b"token": b"t"},
       method=b"announce_peer"), DropReason.BAD_ARGUMENTS, None),
    (q({b"id": ID, b"info_hash": b"x", b"port": 80}, method=b"announce_peer"),
     DropReason.BAD_ARGUMENTS, None),
    (q({b"id": ID}, method=b"get"), DropReason.BAD_ARGUMENTS, None),
    (q({b"id": ID, b"target": b"x", b"seq": 2**64}, method=b"get"), DropReason.BAD_ARGUMENTS,
     (203, "Protocol Error, seq out of 64-bit range")),
    # JS-falsy v (a grape `put {"v": false}`): refused, with an error so the putter
    # need not wait out a timeout.
    (q({b"id": ID, b"token": b"t", b"v": 0}, method=b"put"), DropReason.BAD_ARGUMENTS,
     (203, "Protocol Error, v is 0")),
    (q({b"id": ID, b"token": b"t"}, method=b"put"), DropReason.BAD_ARGUMENTS, None),
    (q({b"id": ID, b"v": b"x"}, method=b"put"), DropReason.BAD_ARGUMENTS, None),
    (q({b"id": ID, b"token": b"t", b"v": b"x", b"k": 1}, method=b"put"),
     DropReason.BAD_ARGUMENTS, (203, "Protocol Error, k is not a string")),
    (b"d1:r" + bencode2.bencode([1]) + b"1:t2:tt1:y1:re", DropReason.BAD_RESPONSE, None),
    (bencode2.bencode({b"t": b"t", b"y": b"r", b"r": {}}), DropReason.BAD_RESPONSE, None),
    (bencode2.bencode({b"t": b"t", b"y": b"r", b"r": {b"id": ID, b"nodes": b"x" * 25}}),
     DropReason.BAD_RESPONSE, None),
    (bencode2.bencode({b"t": b"t", b"y": b"r", b"r": {b"id": ID, b"values": b"x" * 6}}),
     DropReason.BAD_RESPONSE, None),
    (bencode2.bencode({b"t": b"t", b"y": b"r", b"r": {b"id": ID, b"values": [b"x" * 7]}}),
     DropReason.BAD_RESPONSE, None),
    (bencode2.bencode({b"t": b"t", b"y": b"r", b"r": {b"id": ID, b"values": [1]}}),
     DropReason.BAD_RESPONSE, None),
    (bencode2.bencode({b"t": b"t", b"y": b"r", b"r": {b"id": ID, b"token": 1}}),
     DropReason.BAD_RESPONSE, None),
    (bencode2.bencode({b"t": b"t", b"y": b"r", b"r": {b"id": ID}, b"ip": b"abc"}),
     DropReason.BAD_RESPONSE, None),
    (bencode2.bencode({b"t": b"t", b"y": b"e", b"e": b"oops"}), DropReason.BAD_ERROR, None),
    (bencode2.bencode({b"t": b"t", b"y": b"e", b"e": []}), DropReason.BAD_ERROR, None),
    (bencode2.bencode({b"t": b"t", b"y": b"e", b"e": [b"201", b"x"]}), DropReason.BAD_ERROR,
     None),
]


@pytest.mark.parametrize(("data", "reason", "reply"), MALFORMED)
def test_malformed_is_a_typed_error(data: bytes, reason: DropReason,
                                    reply: tuple[int, str] | None) -> None:
    with pytest.raises(KrpcError) as info:
        decode(data)
    assert info.value.reason is reason
    assert info.value.reply == reply
    if reply is not None:
        assert info.value.transaction_id == b"tt"


def test_response_skips_ipv6_and_port_zero_values() -> None:
    raw = bencode2.bencode({b"t": b"t", b"y": b"r", b"r": {
        b"id": ID,
        b"values": [b"\x01\x02\x03\x04\x00\x00", b"6" * 18, b"\x7f\x00\x00\x01\x00\x50"]}})
    message = decode(raw)
    assert isinstance(message, ResponseMessage)
    assert message.response.values == (PeerInfo("127.0.0.1", 80),)


def test_unknown_keys_are_ignored() -> None:
    raw = bencode2.bencode({b"t": b"t", b"y": b"q", b"q": b"ping", b"zz": 1,
                            b"a": {b"id": ID, b"want": [b"n4"]}})
    assert decode(raw) == QueryMessage(b"t", Ping(ID))


# ---------------------------------------------------------------- generated messages

_node_ids = st.binary(min_size=20, max_size=20)
_strings = st.binary(max_size=40)
_int64 = st.integers(-(2**63), 2**63 - 1)
_ipv4 = st.ip_addresses(v=4).map(str)
_ports = st.integers(1, 0xFFFF)  # port 0 entries are skipped on decode (k-rpc parseNodes)
_bvalues = st.recursive(
    st.one_of(_int64, st.binary(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.binary(max_size=8), inner, max_size=4)),
    max_leaves=10)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


_queries = st.one_of(
    st.builds(Ping, _node_ids),
    st.builds(FindNode, _node_ids, _strings),
    st.builds(GetPeers, _node_ids, _strings),
    st.builds(AnnouncePeer, _node_ids, _strings, _ports, _strings, st.just(False)),
    # With implied_port the port field is not checked (the UDP source port is used).
    st.builds(AnnouncePeer, _node_ids, _strings, st.integers(0, 0xFFFF), _strings, st.just(True)),
    st.builds(GetItem, _node_ids, _strings, _optional(_int64)),
    # A falsy v (the integer 0) is refused by design (see _build_put).
    st.builds(PutItem, _node_ids, _strings, _bvalues.filter(lambda v: v != 0),
              _optional(_strings), _optional(_strings), _optional(_int64), _optional(_strings),
              _optional(_int64)),
)
_responses = st.builds(
    Response, _node_ids,
    _optional(st.lists(st.builds(NodeInfo, _node_ids, _ipv4, _ports), max_size=4).map(tuple)),
    _optional(st.lists(st.builds(PeerInfo, _ipv4, _ports), max_size=4).map(tuple)),
    _optional(_strings), _optional(_bvalues), _optional(_strings), _optional(_strings),
    _optional(_int64))
_tids = st.binary(max_size=8)
_versions = _optional(st.binary(max_size=6))
valid_messages = st.one_of(
    st.builds(QueryMessage, _tids, _queries, _versions, st.booleans()),
    st.builds(ResponseMessage, _tids, _responses, _versions,
              _optional(st.builds(PeerInfo, _ipv4, st.integers(0, 0xFFFF)))),
    st.builds(ErrorMessage, _tids, _int64, st.text(max_size=30), _versions),
)


@settings(max_examples=500, deadline=None)
@given(valid_messages)
def test_every_valid_message_round_trips(message: Message) -> None:
    data = encode(message)
    assert decode(data) == message
    assert encode(decode(data)) == data  # canonical: one encoding per message


# ---------------------------------------------------------------- hostile input


def _decode_or_refuse(data: bytes) -> Message | None:
    """``decode`` must either return a message that survives a round trip or raise
    KrpcError; any other exception fails the test."""
    try:
        message = decode(data)
    except KrpcError as exc:
        assert isinstance(exc.reason, DropReason)
        return None
    assert decode(encode(message)) == message
    return message


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    _decode_or_refuse(data)


_leaf = st.one_of(st.integers(-(2**70), 2**70), st.binary(max_size=30),
                  st.sampled_from([ID, b"q", b"r", b"e", b"ping", b"find_node", b"get_peers",
                                   b"announce_peer", b"get", b"put", b"\x7f\x00\x00\x01\x13\x89"]))
_keys = st.sampled_from([b"t", b"y", b"q", b"a", b"r", b"e", b"v", b"ip", b"ro", b"id", b"target",
                         b"info_hash", b"port", b"implied_port", b"token", b"nodes", b"values",
                         b"k", b"sig", b"seq", b"salt", b"cas", b"x"])
_values = st.recursive(_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=6)), max_leaves=20)


@settings(max_examples=250, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=7))
def test_krpc_shaped_dicts_never_crash_the_decoder(body: dict[bytes, Any]) -> None:
    _decode_or_refuse(bencode2.bencode(body))


@settings(max_examples=500, deadline=None)
@given(valid_messages, st.sampled_from([b"", b"a", b"r", b"e"]), _keys,
       st.none() | _values)
def test_one_field_changed_in_a_valid_message(message: Message, where: bytes, key: bytes,
                                              value: Any) -> None:
    """Near-valid input: one key of a valid message (top level or inside its a/r/e
    part) deleted (``value`` None) or replaced. Decoded or refused, never a crash."""
    raw = bencode2.bdecode(encode(message))
    target = raw.get(where) if where else raw
    if not isinstance(target, dict):
        target = raw
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value
    _decode_or_refuse(bencode2.bencode(raw))
