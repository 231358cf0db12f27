"""KrpcNode: sans-IO handling, two nodes over loopback UDP, a lossy fake network."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TypeVar

import bencode2
import pytest
import trio
import trio.testing

from localgrape.krpc import (
    AnnouncePeer,
    ErrorMessage,
    GetItem,
    GetPeers,
    KrpcNode,
    KrpcRemoteError,
    KrpcStore,
    KrpcTimeout,
    NodeInfo,
    PeerInfo,
    Ping,
    PutItem,
    QueryMessage,
    Response,
    ResponseMessage,
    decode,
    ed25519_verify,
    encode,
    immutable_target,
    mutable_target,
    sign_mutable,
)
from tests.support import Address, FakeNet

T = TypeVar("T")
SRC: Address = ("127.0.0.1", 40000)
PEER_ID = b"\x11" * 20


def answer(node: KrpcNode, message: QueryMessage, src: Address = SRC,
           now: float = 0.0) -> ResponseMessage | ErrorMessage:
    out = node.handle_datagram(encode(message), src, now)
    assert len(out) == 1 and out[0][1] == src
    reply = decode(out[0][0])
    assert isinstance(reply, ResponseMessage | ErrorMessage)
    assert reply.transaction_id == message.transaction_id
    return reply


def response(node: KrpcNode, message: QueryMessage, src: Address = SRC,
             now: float = 0.0) -> ResponseMessage:
    reply = answer(node, message, src, now)
    assert isinstance(reply, ResponseMessage), reply
    return reply


# ------------------------------------------------------------------ sans-IO


def test_handle_ping_learns_sender() -> None:
    node = KrpcNode(node_id=b"\x01" * 20)
    reply = response(node, QueryMessage(b"t1", Ping(PEER_ID)))
    assert reply.response.id == b"\x01" * 20
    assert node.routing.get(PEER_ID) == NodeInfo(PEER_ID, *SRC)


def test_get_peers_token_announce_then_values() -> None:
    node = KrpcNode()
    miss = response(node, QueryMessage(b"a", GetPeers(PEER_ID, b"svc")))
    # k-rpc adds the sender to the table before answering, so it is its own neighbour.
    assert miss.response.values is None
    assert miss.response.nodes == (NodeInfo(PEER_ID, *SRC),)
    token = miss.response.token
    assert token is not None
    bad = answer(node, QueryMessage(b"b", AnnouncePeer(PEER_ID, b"svc", 5001, b"nope")))
    assert bad == ErrorMessage(b"b", 203, "cannot `announce_peer` with bad token")
    # A token is bound to the requester IP.
    other = answer(node, QueryMessage(b"c", AnnouncePeer(PEER_ID, b"svc", 5001, token)),
                   src=("127.0.0.2", 40000))
    assert isinstance(other, ErrorMessage)
    response(node, QueryMessage(b"d", AnnouncePeer(PEER_ID, b"svc", 5001, token)))
    response(node, QueryMessage(b"e", AnnouncePeer(PEER_ID, b"svc", 1, token, True)))
    hit = response(node, QueryMessage(b"f", GetPeers(PEER_ID, b"svc")))
    assert hit.response.values == (PeerInfo("127.0.0.1", SRC[1]), PeerInfo("127.0.0.1", 5001))
    assert hit.response.nodes is None  # `_ongetpeers`: values *or* nodes


def test_put_rules_follow_bittorrent_dht() -> None:
    node = KrpcNode()
    token = response(node, QueryMessage(b"g", GetItem(PEER_ID, b"x" * 20))).response.token
    assert token is not None

    def put(**kw: object) -> ResponseMessage | ErrorMessage:
        return answer(node, QueryMessage(b"p", PutItem(PEER_ID, token=token, **kw)))  # type: ignore[arg-type]

    assert put(v=b"x" * 1001) == ErrorMessage(b"p", 205, "data payload too large")
    assert isinstance(put(v=b"hello"), ResponseMessage)
    got = response(node, QueryMessage(b"g", GetItem(PEER_ID, immutable_target(b"hello"))))
    assert got.response.v == b"hello" and got.response.token == token
    k, sig = sign_mutable(b"\x02" * 32, b"m", 1)
    assert put(v=b"m", k=k, sig=sig, seq=1) == ErrorMessage(
        b"p", 400, "verification not supported")
    bad_token = answer(node, QueryMessage(b"q", PutItem(PEER_ID, b"bad", b"v")))
    assert bad_token == ErrorMessage(b"q", 203, "cannot `put` with bad token")


def test_mutable_put_with_verifier() -> None:
    node = KrpcNode(verify=ed25519_verify)
    target = mutable_target(b"\x00" * 32)  # any target yields a token
    token = response(node, QueryMessage(b"g", GetItem(PEER_ID, target))).response.token
    assert token is not None
    k, sig = sign_mutable(b"\x03" * 32, b"v1", 1, b"salt")
    ok = answer(node, QueryMessage(b"p", PutItem(PEER_ID, token, b"v1", k, sig, 1, b"salt")))
    assert isinstance(ok, ResponseMessage)
    again = answer(node, QueryMessage(b"p", PutItem(PEER_ID, token, b"v1", k, sig, 1, b"salt")))
    assert again == ErrorMessage(b"p", 302, "sequence number less than current")
    forged = answer(node, QueryMessage(b"p", PutItem(PEER_ID, token, b"v2", k, sig, 2, b"salt")))
    assert isinstance(forged, ErrorMessage) and forged.code == 206
    got = response(node, QueryMessage(b"g", GetItem(PEER_ID, mutable_target(k, b"salt"))))
    assert (got.response.v, got.response.k, got.response.seq) == (b"v1", k, 1)
    newer = response(node, QueryMessage(b"g", GetItem(PEER_ID, mutable_target(k, b"salt"), 1)))
    assert newer.response.v is None and newer.response.seq == 1


def test_malformed_input_is_counted_never_raised() -> None:
    node = KrpcNode()
    rng = random.Random(0)
    for _ in range(2000):
        junk = rng.randbytes(rng.randrange(0, 80))
        node.handle_datagram(junk, SRC, rng.random() * 1000)
    node.handle_datagram(b"x" * 70000, SRC, 1000.0)
    node.handle_datagram(encode(QueryMessage(b"t", Ping(PEER_ID))), ("127.0.0.1", 0), 1000.0)
    node.handle_datagram(encode(QueryMessage(b"t", Ping(PEER_ID))), ("a.b.c.d", 1), 1000.0)
    stats = node.statistics()
    assert stats.packets_received == 2003
    assert stats.dropped["too_large"] == 1 and stats.dropped["bad_source"] == 2
    assert stats.dropped_total + stats.queries_received + stats.responses_received <= 2003
    # Unknown method gets BEP 5's 204; a query without `a` is dropped silently.
    unknown = bencode2.bencode({b"t": b"u", b"y": b"q", b"q": b"vote", b"a": {b"id": PEER_ID}})
    (out, _), = node.handle_datagram(unknown, SRC, 2000.0)
    assert decode(out) == ErrorMessage(b"u", 204, "Method Unknown")


def test_flood_from_one_address_is_rate_limited() -> None:
    node = KrpcNode(rate=10, burst=20)
    ping = encode(QueryMessage(b"t", Ping(PEER_ID)))
    replies = sum(len(node.handle_datagram(ping, SRC, 0.0)) for _ in range(1000))
    assert replies == 20
    assert node.statistics().dropped["rate_limited"] == 980
    # Another address is unaffected, and one second later the flooder gets 10 more.
    assert node.handle_datagram(ping, ("127.0.0.1", 40001), 0.0)
    assert sum(len(node.handle_datagram(ping, SRC, 1.0)) for _ in range(100)) == 10


def test_unexpected_responses_are_dropped() -> None:
    node = KrpcNode()
    stray = encode(ResponseMessage(b"\x00\x07", Response(PEER_ID)))
    assert node.handle_datagram(stray, SRC, 0.0) == []
    assert node.statistics().dropped["unexpected_response"] == 1


# ------------------------------------------------------------------ real loopback UDP


@asynccontextmanager
async def serving(*nodes: KrpcNode) -> AsyncIterator[list[Address]]:
    async with trio.open_nursery() as nursery:
        addresses = [await nursery.start(n.serve, "127.0.0.1", 0) for n in nodes]
        yield addresses
        nursery.cancel_scope.cancel()


async def test_two_nodes_over_loopback_udp() -> None:
    a, b = KrpcNode(), KrpcNode()
    with trio.fail_after(10):
        async with serving(a, b) as (addr_a, addr_b):
            pong = await a.ping(addr_b)
            assert pong == NodeInfo(b.id, *addr_b)
            # b pings an unknown querier before adding it (KrpcNode._learn_sender);
            # an answer from a, to that ping or to this one, teaches b a.
            await b.ping(addr_a)
            assert b.routing.get(a.id) == NodeInfo(a.id, *addr_a)  # b learnt a
            found = await a.find_node(addr_b, a.id)
            assert found.nodes == (NodeInfo(a.id, *addr_a),)
            miss = await a.get_peers(addr_b, b"svc:auction")
            assert miss.values is None and miss.token is not None
            await a.announce_peer(addr_b, b"svc:auction", 5001, miss.token)
            hit = await a.get_peers(addr_b, b"svc:auction")
            assert hit.values == (PeerInfo("127.0.0.1", 5001),)
            with pytest.raises(KrpcRemoteError) as info:
                await a.announce_peer(addr_b, b"svc:auction", 5001, b"stale")
            assert info.value.code == 203
            item = await a.get(addr_b, immutable_target(b"v"))
            assert item.token is not None
            await a.put(addr_b, item.token, b"v")
            assert (await a.get(addr_b, immutable_target(b"v"))).v == b"v"
    stats = a.statistics()
    assert stats.queries_sent == stats.responses_received + stats.errors_received == 9
    assert stats.queries_timed_out == 0 and stats.in_flight == 0


async def test_query_times_out_and_evicts(autojump_clock: trio.testing.MockClock) -> None:
    a = KrpcNode()
    silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with silent:
        await silent.bind(("127.0.0.1", 0))
        dead = NodeInfo(b"\x22" * 20, "127.0.0.1", silent.getsockname()[1])
        async with serving(a):
            a.routing.add(dead, trio.current_time())
            start = trio.current_time()
            with pytest.raises(KrpcTimeout):
                await a.ping(dead.address)
            assert trio.current_time() - start == pytest.approx(2.0)
    assert dead.id not in a.routing  # bittorrent-dht drops a node after one timeout
    assert a.statistics().queries_timed_out == 1


# ------------------------------------------------------------------ lossy fake network


async def retry(op: Callable[[], Awaitable[T]], attempts: int = 10) -> T:
    """Repeat ``op`` on timeouts: the network loses 30% of datagrams."""
    for _ in range(attempts):
        try:
            return await op()
        except KrpcTimeout:
            continue
    raise AssertionError("never succeeded")


async def test_announce_and_lookup_over_terrible_network(
        autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNet(random.Random(0), drop=0.3, duplicate=0.3, max_delay=1.5)
    nodes = [KrpcNode(store=KrpcStore()) for _ in range(4)]
    async with trio.open_nursery() as nursery:
        net.nursery = nursery
        addresses = []
        for i, node in enumerate(nodes):
            addresses.append(await nursery.start(node.serve_transport, net.endpoint(7000 + i)))
        client, server = nodes[0], nodes[1]
        for addr in addresses[1:]:
            await retry(partial(client.ping, addr))
        assert len(client.routing) == 3

        async def announce() -> None:
            token = (await server.get_peers(addresses[0], b"svc")).token  # server -> client
            assert token is not None
            await server.announce_peer(addresses[0], b"svc", 6000, token)

        await retry(announce)
        for node in nodes[1:]:
            found = await retry(partial(node.get_peers, addresses[0], b"svc"))
            assert found.values == (PeerInfo("127.0.0.1", 6000),)
        nursery.cancel_scope.cancel()
    stats = client.statistics()
    # Duplicated queries are answered twice; duplicated answers are dropped as unexpected.
    assert stats.queries_received > 0
    assert sum(n.statistics().dropped.get("unexpected_response", 0) for n in nodes) > 0
    assert all(set(n.statistics().dropped) <= {"unexpected_response"} for n in nodes)
