"""The k-rpc `_closest` traversal: the pure state machine, then many nodes on a fake network."""

from __future__ import annotations

import random

import trio
import trio.testing

from localgrape.krpc import (
    GetPeers,
    KrpcNode,
    NodeInfo,
    PeerInfo,
    Response,
    RoutingTable,
    Traversal,
    distance_key,
    run_traversal,
)
from tests.support import Address, FakeNet

LOCAL = b"\x00" * 20
TARGET = b"\xf0" + b"\x00" * 19


def node(i: int, port: int | None = None) -> NodeInfo:
    return NodeInfo(bytes([i]) + b"\x00" * 19, "127.0.0.1", port or 7000 + i)


# ------------------------------------------------------------------ sans-IO


def test_empty_tables_fall_back_to_bootstrap_once() -> None:
    t = Traversal(TARGET, RoutingTable(LOCAL), [("127.0.0.1", 1), ("127.0.0.1", 2)])
    assert t.next_queries(16) == [("127.0.0.1", 1), ("127.0.0.1", 2)]
    t.on_failure(("127.0.0.1", 1), timed_out=True)
    # Still too small a table, but k-rpc bootstraps once per traversal.
    assert t.next_queries(16) == []
    assert not t.done
    far, near = node(0x01), node(0xF1)
    t.on_response(("127.0.0.1", 2), Response(node(0x80).id, nodes=(far, near), token=b"tk"))
    # The closest first; the answering node is already queried.
    assert t.next_queries(16) == [near.address, far.address]
    t.on_response(near.address, Response(near.id, nodes=(node(0xF0, 9000),), token=b"n"))
    t.on_failure(far.address, timed_out=False)
    assert t.next_queries(16) == [("127.0.0.1", 9000)]
    t.on_response(("127.0.0.1", 9000), Response(node(0xF0).id))  # no token
    assert t.next_queries(16) == [] and t.done
    result = t.result()
    assert result.responded == 3
    assert [n.node.id for n in result.token_nodes] == [near.id, node(0x80).id]
    assert [n.token for n in result.token_nodes] == [b"n", b"tk"]
    assert result.timed_out == {("127.0.0.1", 1)}
    assert ("127.0.0.1", 2) in result.responders and far.address in result.responders


def test_routing_table_first_and_concurrency_limit() -> None:
    routing = RoutingTable(LOCAL)
    for i in range(1, 40):
        routing.add(node(i), 0.0)
    t = Traversal(TARGET, routing, [("127.0.0.1", 1)])
    first = t.next_queries(16)
    assert len(first) == 16 and t.pending == 16
    expected = sorted(routing, key=lambda n: distance_key(n.id, TARGET))[:16]
    assert first == [n.address for n in expected]
    assert t.next_queries(16) == []  # full
    t.on_failure(first[0], timed_out=True)
    assert len(t.next_queries(16)) == 1


def test_skip_self_and_own_id_are_never_queried() -> None:
    routing = RoutingTable(LOCAL)
    dead, alive = node(0xF1), node(0xF2)
    routing.add(dead, 0.0)
    routing.add(alive, 0.0)
    me: Address = ("127.0.0.1", 6999)
    t = Traversal(TARGET, routing, [me], skip=lambda a: a == dead.address,
                  local_addresses=frozenset({me}))
    assert t.next_queries(16) == [alive.address]
    # An answer naming us (by id) is ignored, and so is our own answer.
    t.on_response(alive.address, Response(alive.id, nodes=(NodeInfo(LOCAL, "127.0.0.1", 1),),
                                          token=b"t"))
    assert t.next_queries(16) == [] and t.done
    assert [n.node for n in t.result().token_nodes] == [alive]


def test_stop() -> None:
    routing = RoutingTable(LOCAL)
    routing.add(node(1), 0.0)
    t = Traversal(TARGET, routing)
    assert t.next_queries(16) == [node(1).address]
    t.stop()
    assert t.next_queries(16) == [] and t.result().stopped


# ------------------------------------------------------------------ over a fake network


async def start(nursery: trio.Nursery, net: FakeNet, nodes: list[KrpcNode],
                first_port: int = 7000) -> list[Address]:
    return [await nursery.start(n.serve_transport, net.endpoint(first_port + i))
            for i, n in enumerate(nodes)]


async def test_converges_on_the_k_closest_and_collects_values(
        autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(0)
    net = FakeNet()
    nodes = [KrpcNode(node_id=rng.randbytes(20)) for _ in range(60)]
    key = b"svc:auction:seller"  # grape keys are raw names, of any length
    async with trio.open_nursery() as nursery:
        addresses = await start(nursery, net, nodes)
        for i, n in enumerate(nodes):  # a sparse, connected graph: a ring plus chords
            for j in {(i + 1) % 60, *rng.sample(range(60), 6)} - {i}:
                n.routing.add(NodeInfo(nodes[j].id, *addresses[j]), 0.0)
        searcher = nodes[0]
        holder = min(nodes[1:], key=lambda n: distance_key(n.id, key))
        holder.store.add_peer(key, PeerInfo("127.0.0.1", 5001), 0.0)
        values: list[PeerInfo] = []

        def visit(r: Response, address: Address) -> bool:
            values.extend(r.values or ())
            return True

        t = Traversal(key, searcher.routing, local_addresses=frozenset({addresses[0]}))
        start_time = trio.current_time()
        result = await run_traversal(searcher, t, GetPeers(searcher.id, key), visit=visit)
        assert trio.current_time() == start_time  # no timeouts on a healthy network
        nursery.cancel_scope.cancel()
    best = sorted((n for n in nodes[1:]), key=lambda n: distance_key(n.id, key))[:20]
    assert [tn.node.id for tn in result.token_nodes] == [n.id for n in best]
    assert values == [PeerInfo("127.0.0.1", 5001)]
    assert searcher.statistics().queries_timed_out == 0


async def test_dead_node_costs_one_timeout_and_is_dropped(
        autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNet()
    a, b = KrpcNode(), KrpcNode()
    async with trio.open_nursery() as nursery:
        _, addr_b = await start(nursery, net, [a, b])
        dead = NodeInfo(b"\xee" * 20, "127.0.0.1", 7999)
        a.routing.add(dead, 0.0)
        a.routing.add(NodeInfo(b.id, *addr_b), 0.0)
        t0 = trio.current_time()
        result = await run_traversal(a, Traversal(b"x", a.routing), GetPeers(a.id, b"x"))
        assert trio.current_time() - t0 == a.query_timeout  # exactly one 2 s timeout
        assert result.timed_out == {dead.address}
        assert dead.id not in a.routing and b.id in a.routing
        # A visitor that stops early cancels what is still in flight.
        a.routing.add(dead, trio.current_time())
        t0 = trio.current_time()
        stopped = await run_traversal(a, Traversal(b"x", a.routing), GetPeers(a.id, b"x"),
                                      visit=lambda r, addr: False)
        assert trio.current_time() == t0 and stopped.stopped
        nursery.cancel_scope.cancel()
