"""Dht: several localgrape DHT nodes in one trio process (fake network and loopback UDP)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from localgrape.krpc import (
    ALL_QUERIES_FAILED,
    NO_NODES_TO_QUERY,
    Dht,
    GetResult,
    KrpcNode,
    ed25519_verify,
    immutable_target,
    mutable_target,
    sign_mutable,
)
from tests.support import BASE, FakeNet, addr, running


def fake_dht(net: FakeNet, i: int, bootstrap: Sequence[int] = (), **kw: object) -> Dht:
    return Dht(transport=net.endpoint(BASE + i), bootstrap=[addr(j) for j in bootstrap],
               **kw)  # type: ignore[arg-type]


async def test_two_dhts_announce_lookup_put_get(autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNet()
    async with trio.open_nursery() as nursery:
        async with running(nursery, fake_dht(net, 0, [1])) as a, \
                running(nursery, fake_dht(net, 1, [0])) as b:
            await a.wait_ready()
            await b.wait_ready()
            t0 = trio.current_time()
            # Like a real grape in a two-node network: one other node acknowledged.
            assert await a.announce(b"svc:auction", 5001) == 1
            assert await b.lookup(b"svc:auction") == ["127.0.0.1:5001"]  # at once
            assert await a.announce(b"svc:auction", 5001) == 1  # no duplicate
            assert await a.lookup(b"svc:auction") == ["127.0.0.1:5001"]
            assert await b.announce(b"svc:auction", 0) == 1  # port 0: the DHT port
            assert sorted(await a.lookup(b"svc:auction")) == [
                "127.0.0.1:5001", f"127.0.0.1:{BASE + 1}"]
            assert await b.lookup(b"never announced") == []

            assert await a.put(b"hello") == 1
            target = immutable_target(b"hello")
            # B stored it on A's put, so its own values answer (id: B's, token null,
            # as a real grape does); without the cache B asks the network and A
            # answers with its id and a token.
            assert await b.get(target) == GetResult(b.node.id, None, b"hello", local=True)
            from_a = await b.get(target, cache=False)
            assert from_a is not None and from_a.id == a.node.id and from_a.token is not None
            assert await a.get(target) == GetResult(a.node.id, None, b"hello", local=True)
            assert await b.get(immutable_target(b"nope")) is None
            assert await a.put(5) == 1  # non-strings are bencoded: i5e
            got = await b.get(immutable_target(5), cache=False)
            assert got is not None and got.v == 5
            assert trio.current_time() == t0  # no timeouts anywhere
            stats = a.node.statistics()
            assert stats.queries_timed_out == 0 and stats.dropped_total == 0
        nursery.cancel_scope.cancel()


async def test_three_dhts_announce_count(autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNet()
    async with trio.open_nursery() as nursery:
        dhts = [fake_dht(net, i, [j for j in range(3) if j != i]) for i in range(3)]
        for d in dhts:
            await nursery.start(d.run)
        for d in dhts:
            await d.wait_ready()
        assert await dhts[0].announce(b"svc", 1234) == 2  # as grape-http-api.md section 3
        for d in dhts:
            assert await d.lookup(b"svc") == ["127.0.0.1:1234"]
        nursery.cancel_scope.cancel()


async def test_lone_dht_answers_no_nodes_and_keeps_its_records(
        autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNet()
    async with trio.open_nursery() as nursery:
        lone = fake_dht(net, 0)
        unbound = fake_dht(net, 1, record_host=None)  # a grape without -b
        await nursery.start(lone.run)
        await nursery.start(unbound.run)
        t0 = trio.current_time()
        assert await lone.announce(b"svc", 5001) == NO_NODES_TO_QUERY
        assert await lone.lookup(b"svc") == ["127.0.0.1:5001"]
        assert await lone.put(b"v") == NO_NODES_TO_QUERY
        got = await lone.get(immutable_target(b"v"))
        assert got is not None and got.v == b"v" and got.token is None
        assert await lone.get(immutable_target(b"v"), cache=False) is None
        assert await unbound.announce(b"svc", 5001) == NO_NODES_TO_QUERY
        assert await unbound.lookup(b"svc") == []
        assert trio.current_time() == t0
        with pytest.raises(ValueError, match="out of range"):
            await lone.announce(b"svc", 70000)
        nursery.cancel_scope.cancel()
    with pytest.raises(RuntimeError, match="not running"):
        await lone.lookup(b"svc")


async def test_dead_bootstrap_costs_one_timeout_and_restart_is_found(
        autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNet()
    async with trio.open_nursery() as nursery:
        a = fake_dht(net, 0, [1], bootstrap_retry=5.0)
        await nursery.start(a.run)
        t0 = trio.current_time()
        # Issued while the initial bootstrap is still waiting on the dead node.
        assert await a.announce(b"svc", 5001) == NO_NODES_TO_QUERY
        assert trio.current_time() - t0 <= a.node.query_timeout
        await a.wait_ready()
        t1 = trio.current_time()
        assert t1 - t0 <= a.node.query_timeout  # real grape: 4.7 s (section 7)
        for _ in range(3):  # real grape: 2.3 s each, we: nothing
            assert await a.announce(b"svc", 5001) == NO_NODES_TO_QUERY
            assert await a.lookup(b"svc") == ["127.0.0.1:5001"]
            assert await a.put(b"x") == NO_NODES_TO_QUERY
            assert await a.get(immutable_target(b"y")) is None
        assert trio.current_time() == t1
        assert a.statistics().suspects == 1
        # The peer comes up (knowing nobody); the background retry finds it.
        b = fake_dht(net, 1)
        await nursery.start(b.run)
        await trio.sleep(a.bootstrap_retry + a.node.query_timeout)
        assert b.node.id in a.node.routing and a.statistics().suspects == 0
        assert await a.announce(b"svc", 5001) == 1
        assert await b.lookup(b"svc") == ["127.0.0.1:5001"]
        nursery.cancel_scope.cancel()


async def test_dead_peer_costs_one_timeout_then_nothing(
        autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNet()
    async with trio.open_nursery() as nursery:
        a = fake_dht(net, 0, [1], bootstrap_retry=30.0)
        await nursery.start(a.run)
        async with running(nursery, fake_dht(net, 1, [0])) as b:
            await a.wait_ready()
            await b.wait_ready()
            assert await a.announce(b"svc", 5001) == 1
        # b is dead now; a still has it in its routing table.
        t0 = trio.current_time()
        assert await a.lookup(b"svc") == ["127.0.0.1:5001"]
        assert trio.current_time() - t0 == a.node.query_timeout
        assert len(a.node.routing) == 0
        t1 = trio.current_time()
        assert await a.announce(b"svc", 5002) == NO_NODES_TO_QUERY
        assert sorted(await a.lookup(b"svc")) == ["127.0.0.1:5001", "127.0.0.1:5002"]
        assert trio.current_time() == t1
        # Restarted on the same address with a new id: found by the retry loop.
        b2 = fake_dht(net, 1)
        await nursery.start(b2.run)
        await trio.sleep(a.bootstrap_retry + a.node.query_timeout)
        assert await a.announce(b"svc", 5003) == 1
        assert "127.0.0.1:5003" in await b2.lookup(b"svc")
        nursery.cancel_scope.cancel()


async def test_concurrent_lookups_share_one_traversal(
        autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNet()
    async with trio.open_nursery() as nursery:
        a, b = fake_dht(net, 0, [1]), fake_dht(net, 1, [0])
        await nursery.start(a.run)
        await nursery.start(b.run)
        await a.wait_ready()
        await b.wait_ready()
        assert await b.announce(b"svc", 5001) == 1
        before = a.statistics().traversals
        results: list[list[str]] = []

        async def look() -> None:
            results.append(await a.lookup(b"svc"))

        async with trio.open_nursery() as inner:
            for _ in range(5):
                inner.start_soon(look)
        assert results == [["127.0.0.1:5001"]] * 5
        stats = a.statistics()
        assert stats.traversals == before + 1 and stats.lookups_merged == 4
        nursery.cancel_scope.cancel()


async def test_mutable_put_needs_a_verifier_on_the_other_side(
        autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNet()
    async with trio.open_nursery() as nursery:
        cli = fake_dht(net, 0, [1])  # like the CLI grape: no verifier
        lib = Dht(transport=net.endpoint(BASE + 1), bootstrap=[addr(0)],
                  node=KrpcNode(verify=ed25519_verify))
        reader = Dht(transport=net.endpoint(BASE + 2), bootstrap=[addr(1)],
                     node=KrpcNode(verify=ed25519_verify))
        for d in (cli, lib, reader):
            await nursery.start(d.run)
            await d.wait_ready()
        k, sig = sign_mutable(b"\x05" * 32, b"m1", 1, b"salt")
        # `cli` refuses ([400, verification not supported]); `reader` stores it.
        assert await lib.put_mutable(b"m1", k=k, sig=sig, seq=1, salt=b"salt") == 1
        # A putter does not keep its mutable item (bittorrent-dht `_put`): `lib`
        # stores it only when `reader` puts it too.
        assert await reader.put_mutable(b"m1", k=k, sig=sig, seq=1, salt=b"salt") == 1
        # Both verifying nodes refuse the same seq: k-rpc queryAll reports the 3xx.
        again = await cli.put_mutable(b"m1", k=k, sig=sig, seq=1, salt=b"salt")
        assert not isinstance(again, int | str) and again.code == 302
        assert str(again) == "302 sequence number less than current"
        target = mutable_target(k, b"salt")
        got = await lib.get(target, salt=b"salt")  # held by `reader` only
        assert got is not None and (got.v, got.seq, got.k) == (b"m1", 1, k)
        # Without a verifier a mutable answer is ignored (bittorrent-dht `get`).
        assert await cli.get(target, salt=b"salt") is None
        lone = fake_dht(net, 3)
        await nursery.start(lone.run)
        assert await lone.put_mutable(b"m", k=k, sig=sig, seq=2) == NO_NODES_TO_QUERY
        nursery.cancel_scope.cancel()
    assert ALL_QUERIES_FAILED == "All queries failed"


async def test_two_dhts_over_loopback_udp() -> None:
    a = Dht()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            addr_a = await nursery.start(a.run)
            b = Dht(bootstrap=[addr_a])
            await nursery.start(b.run)
            await b.wait_ready()
            assert b.node.id in a.node.routing  # a learnt b from its query
            assert await a.announce(b"svc:udp", 6001) == 1
            assert await b.lookup(b"svc:udp") == ["127.0.0.1:6001"]
            assert await b.put(b"over udp") == 1
            got = await a.get(immutable_target(b"over udp"))
            assert got is not None and got.v == b"over udp"
            nursery.cancel_scope.cancel()
