"""The sans-IO core against the tables of grape-http-api.md (no sockets, no clock)."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localgrape import LocalDht, dispatch
from localgrape._dispatch import handler_name
from localgrape._js import js_bencode, number_to_string, parse_json
from localgrape._store import PeerStore, encode_peer

NODE_ID = bytes(range(20))
TYPE_PREFIX = ("The first argument must be of type string or an instance of Buffer, "
               "ArrayBuffer, or Array or an Array-like Object. Received ")


def grape(bind: str | None = "127.0.0.1", dpa: int | None = None) -> LocalDht:
    return LocalDht(dht_port=20001, bind=bind, announce_max_age_ms=dpa, node_id=NODE_ID)


def call(dht: LocalDht, path: str, data: object = None, *, raw: bytes | None = None,
         now: float = 0.0, limit: int | None = None) -> tuple[int, bytes]:
    body = raw if raw is not None else json.dumps({"rid": "r", "data": data}).encode()
    response = dispatch(path, body, dht, now, max_payload_size=limit)
    return response.status, response.body


@pytest.mark.parametrize(("path", "name"), [
    ("/lookup", "Lookup"), ("/Lookup", "Lookup"), ("/-lookup", "Lookup"),
    ("/_lookup", "Lookup"), ("/--lookup", "Lookup"), ("/__get", "Get"), ("/Get", "Get"),
    ("/LOOKUP", "LOOKUP"), ("/lookUp", "LookUp"), ("/look-up", "LookUp"),
    ("/lookup/", "Lookup/"), ("/lookup?x=1", "Lookup?X=1"), ("//lookup", "/Lookup"),
    ("/", ""), ("/foo", "Foo"),
])
def test_handler_name_follows_grape_camel_case(path: str, name: str) -> None:
    assert handler_name(path) == name


@pytest.mark.parametrize(("raw", "status", "body"), [
    (b"", 500, b"ERR_GRAPE_PAYLOAD_INVALID"),
    (b"{data:", 500, b"ERR_GRAPE_PAYLOAD_INVALID"),
    (b'{"data": NaN}', 500, b"ERR_GRAPE_PAYLOAD_INVALID"),
    (b'{"data": Infinity}', 500, b"ERR_GRAPE_PAYLOAD_INVALID"),
    (b'{"data": "x"} x', 500, b"ERR_GRAPE_PAYLOAD_INVALID"),
    (b"\xef\xbb\xbf{}", 500, b"ERR_GRAPE_PAYLOAD_INVALID"),
    (b"null", 500, b"Cannot read properties of null (reading 'data')"),
    (b"5", 200, b'"ERR_GRAPE_LOOKUP"'),
    (b'"x"', 200, b'"ERR_GRAPE_LOOKUP"'),
    (b"[1]", 200, b'"ERR_GRAPE_LOOKUP"'),
    (b"{}", 200, b'"ERR_GRAPE_LOOKUP"'),
    (b' \n{"data": "a", "data": " "}\t', 200, b"[]"),
])
def test_top_level_body_shapes(raw: bytes, status: int, body: bytes) -> None:
    assert call(grape(), "/lookup", raw=raw) == (status, body)


def test_unknown_path_parses_json_first() -> None:
    assert call(grape(), "/foo", raw=b"{") == (500, b"ERR_GRAPE_PAYLOAD_INVALID")
    assert call(grape(), "/foo", "x") == (200, b'"ERR_REQ_NOTFOUND"')


@pytest.mark.parametrize("data", ["", 123, ["a"], None, True, {"a": 1}])
def test_lookup_invalid_names(data: object) -> None:
    assert call(grape(), "/lookup", data) == (200, b'"ERR_GRAPE_LOOKUP"')


def test_announce_then_lookup_on_a_lone_grape() -> None:
    dht = grape()
    assert call(dht, "/lookup", "svc") == (200, b"[]")
    assert call(dht, "/announce", ["svc", 5001]) == (200, b'"No nodes to query"')
    assert call(dht, "/announce", ["svc", 5001]) == (200, b'"No nodes to query"')
    assert call(dht, "/lookup", "svc") == (200, b'["127.0.0.1:5001"]')
    call(dht, "/announce", ["svc", 0])  # port 0: the grape's own DHT port
    call(dht, "/announce", [[115, 118, 99], 1e3])  # a byte array name, 1e3 == 1000
    _status, body = call(dht, "/lookup", "svc")
    assert sorted(json.loads(body)) == ["127.0.0.1:1000", "127.0.0.1:20001",
                                        "127.0.0.1:5001"]


def test_lookup_returns_at_most_100_distinct_peers() -> None:
    dht = grape()
    for port in range(1, 151):
        call(dht, "/announce", ["many", port])
    peers = json.loads(call(dht, "/lookup", "many")[1])
    assert len(peers) == 100 == len(set(peers))


def test_without_bind_own_announces_are_not_stored() -> None:
    dht = grape(bind=None)
    assert call(dht, "/announce", ["svc", 5001]) == (200, b'"No nodes to query"')
    assert call(dht, "/lookup", "svc") == (200, b"[]")


def test_bind_all_interfaces_reports_0000() -> None:
    dht = grape(bind="0.0.0.0")
    call(dht, "/announce", ["svc", 1234])
    assert call(dht, "/lookup", "svc") == (200, b'["0.0.0.0:1234"]')


@pytest.mark.parametrize(("data", "status", "body"), [
    (["svc", "1234"], 200, b'"ERR_GRAPE_SERVICE_PORT"'),
    (["svc", 12.5], 200, b'"ERR_GRAPE_SERVICE_PORT"'),
    (["svc", None], 200, b'"ERR_GRAPE_SERVICE_PORT"'),
    (["svc", True], 200, b'"ERR_GRAPE_SERVICE_PORT"'),
    (["svc", [1234]], 200, b'"ERR_GRAPE_SERVICE_PORT"'),
    (["svc"], 200, b'"ERR_GRAPE_SERVICE_PORT"'),
    ([], 200, b'"ERR_GRAPE_SERVICE_PORT"'),
    ("svc", 200, b'"ERR_GRAPE_ANNOUNCE"'),
    ({"a": 1}, 200, b'"ERR_GRAPE_ANNOUNCE"'),
    (None, 200, b'"ERR_GRAPE_ANNOUNCE"'),
    ([123, 5], 500, (TYPE_PREFIX + "type number (123)").encode()),
    ([None, 5], 500, (TYPE_PREFIX + "null").encode()),
    ([{}, 5], 500, (TYPE_PREFIX + "an instance of Object").encode()),
    ([True, 5], 500, (TYPE_PREFIX + "type boolean (true)").encode()),
    ([123, -1], 500, (TYPE_PREFIX + "type number (123)").encode()),
    (["svc", -1], 500, b'The value of "value" is out of range. It must be >= 0 and '
                       b"<= 65535. Received -1"),
    (["svc", 70000], 500, b'The value of "value" is out of range. It must be >= 0 and '
                          b"<= 65535. Received 70000"),
    (["svc", 1e10], 500, b'The value of "value" is out of range. It must be >= 0 and '
                         b"<= 65535. Received 10_000_000_000"),
    (["", 1234], 200, b'"No nodes to query"'),
    (["svc", 5010, "x", 5], 200, b'"No nodes to query"'),
])
def test_announce_validation(data: object, status: int, body: bytes) -> None:
    assert call(grape(), "/announce", data) == (status, body)


def test_announce_missing_data() -> None:
    assert call(grape(), "/announce", raw=b"{}") == (200, b'"ERR_GRAPE_ANNOUNCE"')


def test_invalid_utf8_names_are_replaced() -> None:
    dht = grape()
    call(dht, "/announce", raw=b'{"data": ["conf:\xff", 7]}')
    assert call(dht, "/lookup", "conf:\ufffd") == (200, b'["127.0.0.1:7"]')


HELLO = "e28910ea0adb94dd45ced75fbff3e135c01bc437"


@pytest.mark.parametrize(("data", "status", "body"), [
    ({"v": "hello"}, 200, b'"No nodes to query"'),
    ({"v": "a" * 1000}, 200, b'"v must be less than 1000 bytes in put()"'),
    ({"v": "\U0001f600" * 500}, 200, b'"v must be less than 1000 bytes in put()"'),
    ({"v": list(range(1000))}, 200, b'"v must be less than 1000 bytes in put()"'),
    ({}, 200, b'"opts.v not given"'),
    (5, 200, b'"opts.v not given"'),
    (True, 200, b'"opts.v not given"'),
    ([1, 2], 200, b'"opts.v not given"'),
    ({"v": None}, 200, b"\"Cannot read properties of null (reading 'length')\""),
    (None, 500, b"Cannot read properties of null (reading 'k')"),
    ({"v": "x", "k": "abcd", "sig": "00", "seq": 1}, 200,
     b'"opts.k ed25519 public key must be 32 bytes"'),
    ({"v": "x", "k": [1, 2]}, 200, b'"opts.k ed25519 public key must be 32 bytes"'),
    ({"v": "x", "k": "ab" * 32}, 200,
     b'"opts.sign function or options.sig signature is required for mutable put"'),
    ({"v": "x", "k": "ab" * 32, "sig": "00"}, 200,
     b'"opts.seq not provided for a mutable update"'),
    ({"v": "x", "k": "ab" * 32, "sig": "00", "seq": "1"}, 200, b'"opts.seq not an integer"'),
    ({"v": "x", "k": "ab" * 32, "sig": "00", "seq": 1, "salt": "s" * 65}, 200,
     b'"opts.salt is > 64 bytes long"'),
    ({"v": "x", "k": "ab" * 32, "sig": "00", "seq": 1, "cas": "1"}, 200,
     b'"opts.cas must be an integer if provided"'),
    ({"k": "ab" * 32}, 200, b'"opts.v not given"'),
    ({"v": "x", "k": "ab" * 32, "sig": "00", "seq": 1.5}, 200, b'"No nodes to query"'),
    ({"v": "x", "k": 5}, 500, (TYPE_PREFIX + "type number (5)").encode()),
])
def test_put_validation(data: object, status: int, body: bytes) -> None:
    assert call(grape(), "/put", data) == (status, body)


def test_put_missing_data_is_a_500() -> None:
    assert call(grape(), "/put", raw=b"{}") == (
        500, b"Cannot read properties of undefined (reading 'k')")


@pytest.mark.parametrize(("value", "digest", "text"), [
    ("hello", HELLO, "hello"),
    ("", "b44b82a4bc6c35f6ad5e9fceefef9509c17fba74", ""),
    ("h\u00e9llo \u2713", "970afbb4d6997f875bc318f63bb5c148e7abfb25", "h\u00e9llo \u2713"),
    (5, "fd512d5838b7f0c9fa46debf0d0f0d0d28ea81a1", "5"),
    ("a" * 999, "a1ef0f1ac1d1462a8b0f169ed61f145a3b9723d4", "a" * 999),
    ("\u00e9" * 500, "9315a2cd94b8231d6c3ad4f1f51ab8658ffd0f08", "\u00e9" * 500),
    (1.5, hashlib.sha1(b"i1e").hexdigest(), "1.5"),
    (True, hashlib.sha1(b"i1e").hexdigest(), "true"),
    ([1, "a", None], hashlib.sha1(b"li1e1:ae").hexdigest(), "1,a,"),
])
def test_put_stores_locally_and_get_finds_it(value: object, digest: str, text: str) -> None:
    dht = grape()
    assert call(dht, "/put", {"v": value}) == (200, b'"No nodes to query"')
    expected = json.dumps({"id": NODE_ID.hex(), "token": None, "v": text},
                          ensure_ascii=False, separators=(",", ":")).encode()
    assert call(dht, "/get", digest) == (200, expected)
    assert call(dht, "/get", digest.upper()) == (200, expected)
    assert call(dht, "/get", {"hash": digest}) == (200, expected)


@pytest.mark.parametrize(("data", "status", "body"), [
    ("00" * 20, 200, b""),
    ("zzzz", 200, b""),
    ("", 200, b""),
    (5, 200, b'"ERR_GRAPE_GENERIC"'),
    ([1, 2], 200, b'"ERR_GRAPE_GENERIC"'),
    ({"x": 1}, 200, b'"ERR_GRAPE_GENERIC"'),
    (None, 500, b"Cannot read properties of null (reading 'salt')"),
    ({"hash": "00", "salt": 5}, 500, (TYPE_PREFIX + "type number (5)").encode()),
])
def test_get_validation(data: object, status: int, body: bytes) -> None:
    assert call(grape(), "/get", data) == (status, body)


def test_get_missing_data_is_a_500() -> None:
    assert call(grape(), "/get", raw=b"{}") == (
        500, b"Cannot read properties of undefined (reading 'salt')")


def test_get_of_a_value_whose_tostring_throws_is_a_500_not_a_crash() -> None:
    dht = grape()
    value = {"toString": 1}
    call(dht, "/put", {"v": value})
    digest = hashlib.sha1(js_bencode(value)).hexdigest()
    assert call(dht, "/get", digest) == (500, b"res.v.toString is not a function")


def test_payload_limit() -> None:
    body = b'{"data":"' + b"a" * 8000 + b'"}'
    assert call(grape(), "/lookup", raw=body, limit=len(body)) == (200, b"[]")
    assert call(grape(), "/lookup", raw=body, limit=len(body) - 1) == (
        413, b"ERR_GRAPE_PAYLOAD_SIZE")


def test_dpa_expiry_exactly_after_the_last_announce() -> None:
    dht = grape(dpa=10_000)
    call(dht, "/announce", ["svc", 1], now=0.0)
    call(dht, "/announce", ["svc", 1], now=5.0)  # re-announce refreshes
    assert call(dht, "/lookup", "svc", now=14.9) == (200, b'["127.0.0.1:1"]')
    assert call(dht, "/lookup", "svc", now=15.0) == (200, b"[]")


def test_peer_store_drops_old_generation_when_full() -> None:
    store = PeerStore(max_size=3)
    for port in range(1, 5):
        store.add(b"k", encode_peer("127.0.0.1", port), 0.0)
    assert len(store) == 4  # old generation kept
    for port in range(5, 9):
        store.add(b"k", encode_peer("127.0.0.1", port), 0.0)
    assert len(store) <= 7


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", b"\x7f\x00\x00\x01"), ("localhost", b"\x00\x00\x00\x00"),
    ("10.0.0", b"\x0a\x00\x00\x00"), ("300.1.2.3", b"\x2c\x01\x02\x03"),
])
def test_encode_peer_like_bittorrent_dht(host: str, expected: bytes) -> None:
    assert encode_peer(host, 1)[:4] == expected


@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1"), (-0.0, "0"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
    (1.5e-7, "1.5e-7"), (0.000001, "0.000001"), (123.456, "123.456"), (5e-324, "5e-324"),
])
def test_number_to_string_matches_js(value: float, text: str) -> None:
    assert number_to_string(value) == text


def test_parse_json_is_strict() -> None:
    assert parse_json('{"a": 1, "a": 2}') == {"a": 2.0}
    for bad in ("NaN", "-Infinity", "[1,]", "{'a': 1}", "1 2"):
        with pytest.raises(ValueError):
            parse_json(bad)
    with pytest.raises(ValueError):
        parse_json("[" * 100_000)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=4),
    max_leaves=12)
paths = st.sampled_from(["/lookup", "/announce", "/put", "/get", "/Get", "/_put", "/x", "/"])


@settings(max_examples=300, deadline=None)
@given(path=paths, data=json_values)
def test_fuzz_dispatch_any_json_data(path: str, data: object) -> None:
    dht = grape()
    status, body = call(dht, path, data)
    assert status in (200, 500)
    if status == 200 and body:
        json.loads(body)  # 200 bodies are JSON


@settings(max_examples=300, deadline=None)
@given(path=st.text(max_size=12).map(lambda s: "/" + s), raw=st.binary(max_size=64))
def test_fuzz_dispatch_any_bytes(path: str, raw: bytes) -> None:
    status, _ = call(grape(), path, raw=raw)
    assert status in (200, 413, 500)
