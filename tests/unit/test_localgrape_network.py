"""NetworkDht: the HTTP operations on KRPC nodes, over an in-memory network in virtual time."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import bencode2
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from localgrape import NetworkDht, dispatch
from localgrape._dispatch import Response, decode, finish
from localgrape._network import bvalue_text
from localgrape._store import (
    Announce,
    DhtFailure,
    Get,
    GetHit,
    Lookup,
    Op,
    PutImmutable,
    StoredValue,
)
from localgrape.krpc import BValue, DropReason, GetPeers, PutItem, QueryMessage, encode
from tests.support import BASE, FakeNet, addr, running


@asynccontextmanager
async def grape(nursery: trio.Nursery, net: FakeNet, i: int, bootstrap: Sequence[int] = (),
                **kw: object) -> AsyncIterator[NetworkDht]:
    """A NetworkDht on ``net`` in its own cancel scope (cancelling it kills the node)."""
    dht = NetworkDht(bind="127.0.0.1", bootstrap=[addr(j) for j in bootstrap],
                     transport=net.endpoint(BASE + i), **kw)  # type: ignore[arg-type]
    async with running(nursery, dht):
        yield dht


async def http(dht: NetworkDht, path: str, data: object) -> Response:
    """What the HTTP layer answers for ``{"data": data}`` on ``path``."""
    import json
    decoded = decode(path, json.dumps({"data": data}).encode(), dht_port=dht.dht_port)
    if isinstance(decoded, Response):
        return decoded
    return finish(decoded, await dht.execute(decoded, trio.current_time()))


async def test_two_nodes_behave_like_two_grapes(autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNet()
    async with trio.open_nursery() as nursery, grape(nursery, net, 0) as a, \
            grape(nursery, net, 1, [0]) as b:
        await b.wait_ready()
        assert len(a.node.routing) == 1  # A learnt B from B's bootstrap query
        t0 = trio.current_time()
        assert await http(a, "/announce", ["svc", 5001]) == Response(200, b"1")
        assert await http(b, "/lookup", "svc") == Response(200, b'["127.0.0.1:5001"]')
        assert await http(b, "/announce", ["svc", 0]) == Response(200, b"1")
        found = await a.execute(Lookup(b"svc"), trio.current_time())
        assert sorted(found) == ["127.0.0.1:5001", f"127.0.0.1:{BASE + 1}"]  # type: ignore
        hello = "e28910ea0adb94dd45ced75fbff3e135c01bc437"
        assert await http(a, "/put", {"v": "hello"}) == Response(200, f'"{hello}"'.encode())
        got = await b.execute(Get(bytes.fromhex(hello)), trio.current_time())
        assert got == GetHit(b.node_id_hex, None, StoredValue("hello"))  # B stored it
        remote = await b.execute(Get(bytes.fromhex(hello), use_cache=False), 0)
        assert isinstance(remote, GetHit) and remote.node_id == a.node_id_hex
        assert remote.token is not None and len(remote.token) == 40
        # The putting node answers the JS text of the JSON value; the other node
        # the text of the bencoded value, as real grapes do.
        assert await http(a, "/put", {"v": True}) == Response(
            200, b'"' + hashlib.sha1(b"i1e").hexdigest().encode() + b'"')
        target = hashlib.sha1(b"i1e").digest()
        assert (await a.execute(Get(target), 0)) == GetHit(a.node_id_hex, None,
                                                           StoredValue("true"))
        assert (await b.execute(Get(target), 0)) == GetHit(b.node_id_hex, None,
                                                           StoredValue("1"))
        # Falsy values are refused by the other node at once (not after 2 s).
        t1 = trio.current_time()
        assert await http(a, "/put", {"v": 0}) == Response(200, b'"All queries failed"')
        assert trio.current_time() - t1 < 0.1
        assert await http(b, "/get", hashlib.sha1(b"i0e").hexdigest()) == Response(200, b"")
        # CLI grapes have no verifier: every mutable put is refused.
        mutable = {"v": "x", "k": "ab" * 32, "sig": "cd" * 64, "seq": 1}
        assert await http(a, "/put", mutable) == Response(200, b'"All queries failed"')
        assert await http(a, "/get", "zz") == Response(200, b"")  # not a SHA-1: a miss
        assert trio.current_time() - t0 < 0.5  # nothing waited for a timeout
        nursery.cancel_scope.cancel()


async def test_dead_peer_costs_one_timeout_then_answers_like_a_lone_grape(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="localgrape")
    net = FakeNet()
    async with trio.open_nursery() as nursery, grape(nursery, net, 0, [1]) as a:
        async with grape(nursery, net, 1, [0]) as b:
            await b.wait_ready()
            assert await http(a, "/announce", ["svc", 5001]) == Response(200, b"1")
        # B is dead. Real grape: 2.0-2.5 s for the next operation, then 2.3 s for
        # every one after (the dead bootstrap address is retried on each).
        t0 = trio.current_time()
        assert await http(a, "/announce", ["svc", 5002]) == Response(
            200, b'"No nodes to query"')
        assert trio.current_time() - t0 <= a.node.query_timeout + 0.01
        t1 = trio.current_time()
        for _ in range(5):
            assert await http(a, "/announce", ["svc", 5003]) == Response(
                200, b'"No nodes to query"')
            assert sorted(await a.execute(Lookup(b"svc"), 0)) == [  # type: ignore[arg-type]
                "127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003"]
        assert trio.current_time() - t1 < 0.01
        # B comes back (new id, same address): the background retry finds it.
        async with grape(nursery, net, 1, [0]):
            await trio.sleep(a.krpc.bootstrap_retry + 1)
            assert await http(a, "/announce", ["svc", 5004]) == Response(200, b"1")
        nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records if "DHT" in r.getMessage()]
    assert any("not answering" in line and f"{BASE + 1}" in line for line in lines)
    assert any("answers again" in line for line in lines)
    # One line per state change, never one per packet or per operation.
    assert len(lines) < 12, lines


async def test_lone_node_with_unreachable_bootstrap_is_fast_after_one_timeout(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="localgrape")
    net = FakeNet()
    async with trio.open_nursery() as nursery, grape(nursery, net, 0, [9]) as a:
        await a.wait_ready()
        a.check_state()
        t0 = trio.current_time()
        assert await http(a, "/announce", ["svc", 5001]) == Response(
            200, b'"No nodes to query"')
        assert await http(a, "/lookup", "svc") == Response(200, b'["127.0.0.1:5001"]')
        assert await http(a, "/get", "00" * 20) == Response(200, b"")
        assert trio.current_time() - t0 < 0.01  # real grape: about 2.3 s each
        nursery.cancel_scope.cancel()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"joining via 127.0.0.1:{BASE + 9}" in text
    assert "no bootstrap node answered" in text
    assert text.count("not answering") == 1


@pytest.mark.parametrize("max_age_ms", [300, 120_000])
async def test_dpa_expiry_holds_on_every_node(autojump_clock: trio.testing.MockClock,
                                              max_age_ms: int) -> None:
    net = FakeNet()
    async with trio.open_nursery() as nursery, \
            grape(nursery, net, 0, announce_max_age_ms=max_age_ms) as a, \
            grape(nursery, net, 1, [0], announce_max_age_ms=max_age_ms) as b:
        await b.wait_ready()
        max_age = max_age_ms / 1000
        assert await a.execute(Announce(b"svc", 5001), 0) == 1
        await trio.sleep(max_age * 0.9)
        assert await b.execute(Lookup(b"svc"), 0) == ["127.0.0.1:5001"]
        assert await a.execute(Announce(b"svc", 5001), 0) == 1  # refreshes A and B
        await trio.sleep(max_age * 0.9)
        assert await b.execute(Lookup(b"svc"), 0) == ["127.0.0.1:5001"]
        assert await a.execute(Lookup(b"svc"), 0) == ["127.0.0.1:5001"]
        await trio.sleep(max_age * 0.2)
        # Gone from A's own store and from B's (section 6, "simple choice": X).
        assert await b.execute(Lookup(b"svc"), 0) == []
        assert await a.execute(Lookup(b"svc"), 0) == []
        nursery.cancel_scope.cancel()


async def test_lone_network_dht_answers_like_the_local_one(
        autojump_clock: trio.testing.MockClock) -> None:
    """With no bootstrap nodes, NetworkDht gives what LocalDht (the lone grape) gives."""
    from localgrape import LocalDht

    net = FakeNet()
    async with trio.open_nursery() as nursery, grape(nursery, net, 0) as a:
        local = LocalDht(dht_port=BASE, bind="127.0.0.1")
        requests: list[tuple[str, object]] = [
            ("/announce", ["svc", 5001]), ("/lookup", "svc"), ("/announce", ["svc", 0]),
            ("/put", {"v": "hello"}), ("/get", "e28910ea0adb94dd45ced75fbff3e135c01bc437"),
            ("/put", {"v": [1, "a", None]}), ("/put", {"v": {"a": 1}}), ("/put", {"v": 1.5}),
            ("/get", "00" * 20), ("/get", "zz"), ("/put", {"v": "x", "k": "ab" * 32,
                                                          "sig": "00", "seq": 1}),
        ]
        for path, data in requests:
            import json
            body = json.dumps({"data": data}).encode()
            want = dispatch(path, body, local, 0.0)
            got = await http(a, path, data)
            if path == "/lookup":
                assert sorted(got.body.decode()) == sorted(want.body.decode())
            else:
                assert got.body.replace(a.node_id_hex.encode(), b"<id>") == \
                    want.body.replace(local.node_id_hex.encode(), b"<id>"), path
        nursery.cancel_scope.cancel()


# --- hostile datagrams (sans-IO: handle_datagram never raises) ---------------

bvalues = st.recursive(
    st.integers(-(2**70), 2**70) | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.binary(max_size=8), children, max_size=5),
    max_leaves=20)


@given(bvalues)
def test_bvalue_text_is_total(value: BValue) -> None:
    assert isinstance(bvalue_text(value), str)


def test_bvalue_text_is_node_to_string() -> None:
    assert bvalue_text(b"h\xc3\xa9") == "h\u00e9"
    assert bvalue_text(b"\xff") == "\ufffd"
    assert bvalue_text(5) == "5"
    assert bvalue_text([1, b"a", [2, [b"b"]], []]) == "1,a,2,b,"
    assert bvalue_text({b"a": 1}) == "[object Object]"
    assert bvalue_text([[[]] * 3] * 2) == ",,,,,"  # [[[],[],[]],[[],[],[]]]
    deep: BValue = b"x"
    for _ in range(5000):
        deep = [deep]
    assert bvalue_text(deep) == "x"


hostile = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda d: bencode2.bencode(d),
              st.dictionaries(st.sampled_from([b"t", b"y", b"q", b"a", b"r", b"e", b"v"]),
                              bvalues, max_size=6)),
    st.builds(lambda v, token: encode(QueryMessage(b"tt", PutItem(b"\x01" * 20, token, v))),
              bvalues, st.binary(min_size=1, max_size=20)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(hostile, max_size=20))
def test_hostile_datagrams_never_break_the_http_answers(datagrams: list[bytes]) -> None:
    dht = NetworkDht(bind="127.0.0.1")
    node = dht.node
    source = ("127.0.0.2", 4000)
    # A valid token for `source`, so that some puts get through (and store junk).
    reply = node.handle_datagram(encode(QueryMessage(b"t0", GetPeers(b"\x02" * 20, b"k"))),
                                 source, 1.0)
    token = bencode2.bdecode(reply[0][0])[b"r"][b"token"]
    for data in datagrams:
        node.handle_datagram(data, source, 1.0)
    node.handle_datagram(encode(QueryMessage(b"t1", PutItem(b"\x03" * 20, token, [b"x", 1]))),
                         source, 1.0)
    stats = node.statistics()
    assert stats.packets_received == len(datagrams) + 2
    for target in list(node.store._items):
        op: Op = Get(target)
        outcome = trio.run(_local_get, dht, op)
        assert isinstance(outcome, GetHit) and isinstance(outcome.value.text, str)


async def _local_get(dht: NetworkDht, op: Op) -> object:
    # A local hit needs no network: `execute` answers before any traversal.
    return await dht._get(op)  # type: ignore[arg-type]


def test_spoofed_tokens_are_refused_and_counted() -> None:
    dht = NetworkDht(bind="127.0.0.1")
    node = dht.node
    victim, spoofer = ("127.0.0.2", 4000), ("127.0.0.3", 4000)
    reply = node.handle_datagram(encode(QueryMessage(b"t0", GetPeers(b"\x02" * 20, b"k"))),
                                 victim, 1.0)
    token = bencode2.bdecode(reply[0][0])[b"r"][b"token"]
    for forged in (token, b"\x00" * len(token), b"x"):
        out = node.handle_datagram(encode(QueryMessage(
            b"t1", PutItem(b"\x03" * 20, forged, b"junk"))), spoofer, 2.0)
        assert bencode2.bdecode(out[0][0])[b"y"] == b"e"
    assert node.statistics().dropped[DropReason.BAD_TOKEN.value] == 3
    assert node.store.item_count() == 0


def test_immutable_put_op_carries_what_the_network_needs() -> None:
    op = decode("/put", b'{"data":{"v":{"b":[1,"x"],"a":true}}}', dht_port=1)
    assert isinstance(op, PutImmutable)
    v = bencode2.bdecode(op.encoded_v)
    assert bencode2.bencode(v) == op.encoded_v
    assert hashlib.sha1(op.encoded_v).digest() == op.target
    assert isinstance(finish(op, DhtFailure("All queries failed")), Response)
