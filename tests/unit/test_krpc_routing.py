"""Kademlia routing table: buckets, closest(), refresh, evict-on-failure."""

from __future__ import annotations

import random

import pytest

from localgrape.krpc import AddStatus, NodeInfo, RoutingTable, distance_key

LOCAL = b"\x00" * 20


def node(i: int, *, prefix: bytes = b"", port: int | None = None) -> NodeInfo:
    ident = prefix + i.to_bytes(20 - len(prefix), "big")
    return NodeInfo(ident, "127.0.0.1", port if port is not None else 10000 + i % 50000)


def test_bucket_index_is_highest_xor_bit() -> None:
    table = RoutingTable(LOCAL)
    assert table.bucket_index(b"\x80" + b"\x00" * 19) == 159
    assert table.bucket_index(b"\x00" * 19 + b"\x01") == 0
    assert table.bucket_index(LOCAL) == -1


def test_ignores_self_bad_ids_and_port_zero() -> None:
    table = RoutingTable(LOCAL)
    assert table.add(NodeInfo(LOCAL, "1.2.3.4", 1), 0).status is AddStatus.IGNORED
    assert table.add(NodeInfo(b"short", "1.2.3.4", 1), 0).status is AddStatus.IGNORED
    assert table.add(NodeInfo(b"\x01" * 20, "1.2.3.4", 0), 0).status is AddStatus.IGNORED
    assert len(table) == 0


def test_add_refresh_and_closest_matches_brute_force() -> None:
    rng = random.Random(0)
    local = rng.randbytes(20)
    table = RoutingTable(local)
    nodes = [NodeInfo(rng.randbytes(20), "127.0.0.1", 1000 + i) for i in range(300)]
    for n in nodes:
        table.add(n, 0.0)
    kept = set(table)
    assert len(kept) == len(table) <= 300
    for _ in range(20):
        target = rng.randbytes(20)
        expected = sorted(kept, key=lambda n: int.from_bytes(n.id, "big")
                          ^ int.from_bytes(target, "big"))[:20]
        assert table.closest(target) == expected
    assert table.add(nodes[0], 5.0).status in (AddStatus.UPDATED, AddStatus.FULL)


def test_closest_accepts_grape_keys_of_any_length() -> None:
    table = RoutingTable(LOCAL)
    a = NodeInfo(b"svc" + b"\x00" * 17, "127.0.0.1", 1)
    b = NodeInfo(b"zzz" + b"\x00" * 17, "127.0.0.1", 2)
    table.add(a, 0)
    table.add(b, 0)
    assert table.closest(b"svc") == [a, b]
    assert table.closest(b"svc:a-much-longer-service-name") == [a, b]
    assert table.closest(b"") == sorted([a, b], key=lambda n: n.id)
    assert table.closest(b"zzz", 1) == [b]
    # k-bucket semantics: missing bytes count as 0xFF for every node.
    assert distance_key(b"\x01\x02", b"\x01") == 0xFF
    assert distance_key(b"\x01", b"\x03\x04") == (0x02 << 8) | 0xFF


def test_full_bucket_asks_to_ping_oldest_then_evicts_on_failure() -> None:
    table = RoutingTable(LOCAL, k=3)
    far = [node(i, prefix=b"\x80") for i in range(1, 5)]  # all in bucket 159
    for t, n in enumerate(far[:3]):
        assert table.add(n, float(t)).status is AddStatus.ADDED
    result = table.add(far[3], 10.0)
    assert result.status is AddStatus.FULL
    assert result.ping == far[0]  # least recently seen
    assert far[3] not in list(table)
    # The oldest answers: it is refreshed and becomes the most recent.
    assert table.add(far[0], 11.0).status is AddStatus.UPDATED
    assert table.add(far[3], 12.0).ping == far[1]
    # far[1] fails to answer: evicted, replaced by the waiting candidate.
    assert table.record_failure(far[1].id, 13.0)
    assert set(table) == {far[0], far[2], far[3]}
    assert table.last_change == 13.0


def test_failures_to_evict_threshold_and_reset() -> None:
    table = RoutingTable(LOCAL, failures_to_evict=2)
    n = node(7)
    table.add(n, 0)
    assert not table.record_failure(n.id)
    table.add(n, 1)  # heard from it again: failures reset
    assert not table.record_failure(n.id)
    assert table.record_failure(n.id)
    assert n.id not in table
    assert not table.record_failure(n.id)
    assert not table.remove(n.id)


def test_new_id_on_same_address_replaces_stale_contact() -> None:
    # A restarted grape keeps its port but gets a new id (grape-http-api.md section 7).
    table = RoutingTable(LOCAL)
    old = NodeInfo(b"\x01" * 20, "127.0.0.1", 20001)
    new = NodeInfo(b"\x02" * 20, "127.0.0.1", 20001)
    table.add(old, 0)
    result = table.add(new, 1)
    assert result.status is AddStatus.ADDED and result.replaced == old
    assert list(table) == [new]


def test_same_id_new_address_follows_the_node() -> None:
    table = RoutingTable(LOCAL)
    table.add(NodeInfo(b"\x01" * 20, "127.0.0.1", 1), 0)
    table.add(NodeInfo(b"\x01" * 20, "127.0.0.1", 2), 1)
    assert list(table) == [NodeInfo(b"\x01" * 20, "127.0.0.1", 2)]
    contact = table.contact(b"\x01" * 20)
    assert contact is not None and contact.last_seen == 1


def test_stale_contacts() -> None:
    table = RoutingTable(LOCAL)
    table.add(node(1), 0)
    table.add(node(2), 50)
    assert table.stale(100, 60) == [node(1)]


def test_rejects_bad_construction() -> None:
    with pytest.raises(ValueError):
        RoutingTable(b"short")
    with pytest.raises(ValueError):
        RoutingTable(LOCAL, k=0)
