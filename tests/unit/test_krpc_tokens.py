"""BEP 5 tokens, the per-address rate limiter and the peer/item store."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import pytest

from localgrape.krpc import (
    KrpcStore,
    PeerInfo,
    PutRejected,
    RateLimiter,
    StoredItem,
    TokenManager,
    immutable_target,
    mutable_target,
)


def counting_bytes() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda n: bytes([next(counter) % 256]) * n


def test_token_is_sha1_of_ip_and_secret_like_bittorrent_dht() -> None:
    tokens = TokenManager(0.0, random_bytes=lambda n: b"s" * n)
    assert tokens.generate("127.0.0.1", 1.0) == hashlib.sha1(b"127.0.0.1" + b"s" * 20).digest()


def test_token_valid_for_current_and_previous_secret_only() -> None:
    tokens = TokenManager(0.0, rotate_interval=300, random_bytes=counting_bytes())
    token = tokens.generate("10.0.0.1", 10.0)
    assert tokens.validate("10.0.0.1", token, 299.0)
    assert not tokens.validate("10.0.0.2", token, 299.0)  # bound to the IP
    assert tokens.validate("10.0.0.1", token, 300.0)  # one rotation: previous secret
    assert tokens.validate("10.0.0.1", token, 599.0)
    assert not tokens.validate("10.0.0.1", token, 600.0)  # two rotations: gone
    assert not tokens.validate("10.0.0.1", b"", 10.0)


def test_long_gap_renews_both_secrets() -> None:
    tokens = TokenManager(0.0, rotate_interval=10, random_bytes=counting_bytes())
    token = tokens.generate("1.1.1.1", 0.0)
    assert not tokens.validate("1.1.1.1", token, 1000.0)
    fresh = tokens.generate("1.1.1.1", 1000.0)
    assert tokens.validate("1.1.1.1", fresh, 1009.0)
    with pytest.raises(ValueError):
        TokenManager(0.0, rotate_interval=0)


def test_rate_limiter_bounds_bursts_and_refills() -> None:
    limiter = RateLimiter(rate=10, burst=5, max_keys=2)
    assert [limiter.allow("a", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("b", 0.0)  # keys are independent
    assert limiter.allow("a", 0.1)  # 0.1 s refills one token
    assert not limiter.allow("a", 0.1)
    limiter.allow("c", 0.1)
    assert len(limiter) == 2  # bounded memory: the idlest key was forgotten
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)


def test_store_peers_dedup_order_and_limit() -> None:
    store = KrpcStore()
    a, b = PeerInfo("127.0.0.1", 1), PeerInfo("127.0.0.1", 2)
    store.add_peer(b"svc", a, 0)
    store.add_peer(b"svc", b, 1)
    store.add_peer(b"svc", a, 2)  # re-announce: no duplicate, now the newest
    assert store.peers(b"svc", 3) == [a, b]
    assert store.peers(b"svc", 3, limit=1) == [a]
    assert store.peers(b"other", 3) == []
    assert store.keys() == [b"svc"] and store.peer_count() == 2
    assert store.remove_peer(b"svc", a) and not store.remove_peer(b"svc", a)


def test_store_expiry_is_exactly_max_age_after_last_announce() -> None:
    store = KrpcStore(peer_max_age=60)
    p = PeerInfo("127.0.0.1", 1)
    store.add_peer(b"k", p, 0)
    store.add_peer(b"k", p, 30)
    assert store.peers(b"k", 89.9) == [p]
    assert store.peers(b"k", 90) == []
    assert store.keys() == []


def test_store_without_age_never_expires_but_is_bounded() -> None:
    store = KrpcStore(max_peers=3)
    for i in range(5):
        store.add_peer(b"k%d" % (i % 2), PeerInfo("127.0.0.1", i + 1), float(i))
    assert store.peer_count() == 3
    assert store.peers(b"k0", 1e9) == [PeerInfo("127.0.0.1", 5), PeerInfo("127.0.0.1", 3)]


def test_store_items_immutable_and_lru_bound() -> None:
    store = KrpcStore(max_items=2)
    t1 = store.put_immutable(b"one", b"i" * 20)
    assert t1 == immutable_target(b"one")
    t2 = store.put_immutable(b"two", b"i" * 20)
    assert store.get_item(t1) is not None  # t1 now most recently used
    store.put_immutable(b"three", b"i" * 20)
    assert store.get_item(t2) is None and store.item_count() == 2


def test_store_mutable_seq_and_cas_rules() -> None:
    store = KrpcStore()
    item = StoredItem(b"v1", b"i" * 20, k=b"k" * 32, sig=b"s" * 64, seq=1, salt=b"salt")
    target = store.put_mutable(item)
    assert target == mutable_target(b"k" * 32, b"salt")
    with pytest.raises(PutRejected) as info:
        store.put_mutable(item)
    assert (info.value.code, info.value.message) == (302, "sequence number less than current")
    newer = StoredItem(b"v2", b"i" * 20, k=b"k" * 32, sig=b"s" * 64, seq=2, salt=b"salt")
    with pytest.raises(PutRejected) as info:
        store.put_mutable(newer, cas=5)
    assert info.value.code == 301
    store.put_mutable(newer, cas=1)
    stored = store.get_item(target)
    assert stored is not None and stored.v == b"v2" and stored.is_mutable
    with pytest.raises(ValueError):
        store.put_mutable(StoredItem(b"v", b"i" * 20))
