"""localgrape.krpc against real grenache-grape 1.0.0 DHT nodes (bittorrent-dht 10.0.0).

Pins down how grape keys services on the DHT: the ``info_hash`` is the raw
UTF-8 service name (not a hash), and the stored peer is ``127.0.0.1:<port>``.
Only loopback addresses are used. HTTP calls run in a thread so that our node
keeps answering the grapes' UDP queries meanwhile.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import trio

from localgrape.krpc import (
    KrpcNode,
    KrpcRemoteError,
    PeerInfo,
    immutable_target,
    sign_mutable,
)
from tests.support import GrapeProc, grape_post, require_grape, running_grapes, unique

pytestmark = pytest.mark.interop


@pytest.fixture
def grapes() -> Iterator[list[GrapeProc]]:
    with running_grapes([require_grape()], count=2) as procs:
        yield procs


@pytest.fixture
async def node() -> AsyncIterator[KrpcNode]:
    krpc = KrpcNode()
    async with trio.open_nursery() as nursery:
        await nursery.start(krpc.serve, "127.0.0.1", 0)
        yield krpc
        nursery.cancel_scope.cancel()


async def http(grape: GrapeProc, path: str, data: Any) -> httpx.Response:
    return await grape_post(grape, path, data, rid="krpc-test")


def dht(grape: GrapeProc) -> tuple[str, int]:
    return ("127.0.0.1", grape.dht_port)


async def test_ping_real_grape(grapes: list[GrapeProc], node: KrpcNode) -> None:
    with trio.fail_after(5):
        a = await node.ping(dht(grapes[0]))
        b = await node.ping(dht(grapes[1]))
    assert len(a.id) == 20 and len(b.id) == 20 and a.id != b.id
    # Both answers taught our routing table the grapes (k-rpc `addNode` does the same).
    assert node.routing.get(a.id) == a
    assert node.statistics().dropped_total == 0


async def test_http_announce_is_raw_name_on_the_dht(grapes: list[GrapeProc],
                                                    node: KrpcNode) -> None:
    a, b = grapes
    name = unique("krpc-svc")
    r = await http(a, "/announce", [name, 5123])
    assert r.text == "1"
    with trio.fail_after(5):
        # The key is the UTF-8 name itself: no hashing (Grape.js str2hex/toBuffer).
        for grape in (a, b):
            answer = await node.get_peers(dht(grape), name.encode())
            assert answer.values == (PeerInfo("127.0.0.1", 5123),)
            assert answer.token is not None and len(answer.token) == 20
        # Its SHA-1 is *not* the key.
        hashed = await node.get_peers(dht(a), hashlib.sha1(name.encode()).digest())
        assert hashed.values is None
        assert hashed.nodes is not None
        # find_node answers with compact nodes; A knows B.
        b_id = (await node.ping(dht(b))).id
        found = await node.find_node(dht(a), name.encode())
    assert found.nodes is not None
    assert any(n.id == b_id and n.port == b.dht_port for n in found.nodes)


async def test_krpc_announce_is_visible_in_http_lookup(grapes: list[GrapeProc],
                                                       node: KrpcNode) -> None:
    a, b = grapes
    name = unique("krpc-ann")
    with trio.fail_after(5):
        token = (await node.get_peers(dht(a), name.encode())).token
        assert token is not None
        await node.announce_peer(dht(a), name.encode(), 6001, token)
        implied = unique("krpc-implied")
        token = (await node.get_peers(dht(a), implied.encode())).token
        assert token is not None
        await node.announce_peer(dht(a), implied.encode(), 9, token, implied_port=True)
    # B finds it through A's DHT store.
    assert (await http(b, "/lookup", name)).json() == ["127.0.0.1:6001"]
    assert (await http(a, "/lookup", name)).json() == ["127.0.0.1:6001"]
    # implied_port: grape records our UDP source port, not the `port` argument.
    assert (await http(b, "/lookup", implied)).json() == [f"127.0.0.1:{node.address[1]}"]


async def test_bad_token_is_refused_by_grape(grapes: list[GrapeProc], node: KrpcNode) -> None:
    with trio.fail_after(5), pytest.raises(KrpcRemoteError) as info:
        await node.announce_peer(dht(grapes[0]), b"krpc-bad-token", 6002, b"x" * 20)
    assert (info.value.code, info.value.message) == (203, "cannot `announce_peer` with bad token")


async def test_grape_announces_to_our_node(grapes: list[GrapeProc], node: KrpcNode) -> None:
    a, _ = grapes
    with trio.fail_after(5):
        await node.ping(dht(a))  # A learns our node (k-rpc adds query senders)
    name = unique("krpc-to-us")
    # A runs get_peers on B and on us, then announce_peer with our token:
    # both acknowledge, so the count is 2.
    r = await http(a, "/announce", [name, 7007])
    assert r.text == "2"
    assert node.store.peers(name.encode(), trio.current_time()) == [PeerInfo("127.0.0.1", 7007)]
    # ...and grape's lookup on A reads it back from our node too.
    assert (await http(a, "/lookup", name)).json() == ["127.0.0.1:7007"]
    stats = node.statistics()
    assert stats.queries_received >= 2
    assert stats.dropped_total == 0


async def test_immutable_items_both_ways(grapes: list[GrapeProc], node: KrpcNode) -> None:
    a, b = grapes
    value = unique("krpc-value")
    r = await http(a, "/put", {"v": value})
    target = immutable_target(value.encode())
    assert r.json() == target.hex()  # sha1 of bencoded v (grape-http-api.md section 5)
    with trio.fail_after(5):
        got = await node.get(dht(b), target)
        assert got.v == value.encode()
        ours = unique("krpc-ours").encode()
        our_target = immutable_target(ours)
        miss = await node.get(dht(a), our_target)
        assert miss.v is None and miss.token is not None
        await node.put(dht(a), miss.token, ours)
    body = (await http(a, "/get", our_target.hex())).json()
    assert body["v"] == ours.decode()


async def test_mutable_put_is_refused_like_cli_grape(grapes: list[GrapeProc],
                                                     node: KrpcNode) -> None:
    a = grapes[0]
    k, sig = sign_mutable(b"\x01" * 32, b"mutable", 1)
    with trio.fail_after(5):
        token = (await node.get(dht(a), hashlib.sha1(k).digest())).token
        assert token is not None
        with pytest.raises(KrpcRemoteError) as info:
            await node.put(dht(a), token, b"mutable", k=k, sig=sig, seq=1)
    assert (info.value.code, info.value.message) == (400, "verification not supported")
