"""The operations the HTTP layer asks of a DHT, and the local-only DHT.

The HTTP layer never touches a store directly: it hands a decoded operation
(:mod:`localgrape._dispatch`) to a :class:`Dht`. Two implement the protocol:
:class:`LocalDht`, a lone grape that reaches no other node (synchronous, used
by the sans-IO :func:`~localgrape.dispatch`), and
:class:`~localgrape._network.NetworkDht`, the KRPC node that ``serve`` runs.

Times are seconds on whatever clock the caller passes in (``trio.current_time()``
in the server, a number in unit tests), so expiry is testable in virtual time.
"""

from __future__ import annotations

import os
import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "NO_NODES",
    "Announce",
    "Dht",
    "DhtFailure",
    "Get",
    "GetHit",
    "LocalDht",
    "Lookup",
    "Op",
    "Outcome",
    "PeerStore",
    "PutImmutable",
    "PutMutable",
    "StoredValue",
    "ValueStore",
    "decode_peer",
    "encode_peer",
]

# k-rpc queryAll with an empty node list (grape-http-api.md sections 3, 5 and 7).
NO_NODES: Final = "No nodes to query"
# record-cache maxSize of bittorrent-dht's peer store (section 6, "only other eviction").
PEER_STORE_MAX_SIZE: Final = 10_000
# Grape passes dht_maxValues 5000 to bittorrent-dht's value LRU.
VALUE_STORE_MAX_SIZE: Final = 5_000
# bittorrent-dht lookup: `self._peers.get(infoHash, 100)` (section 2).
MAX_LOOKUP: Final = 100


def encode_peer(host: str, port: int) -> bytes:
    """bittorrent-dht ``encodePeer``: 4 address bytes and a big-endian port.

    Each dotted part goes through ``parseInt(part, 10)`` into a byte, so a bind
    address that is not dotted IPv4 (``localhost``) becomes ``0.0.0.0``.
    """
    parts = host.split(".")
    out = bytearray(6)
    for i in range(4):
        digits = ""
        text = parts[i].lstrip(" \t\n\r\v\f") if i < len(parts) else "0"
        sign = -1 if text.startswith("-") else 1
        text = text[1:] if text[:1] in "+-" else text
        for ch in text:
            if not ch.isascii() or not ch.isdigit():
                break
            digits += ch
        out[i] = (sign * int(digits)) & 0xFF if digits else 0
    out[4:6] = port.to_bytes(2, "big")
    return bytes(out)


def decode_peer(compact: bytes) -> str:
    """``"a.b.c.d:port"`` from a 6-byte compact peer."""
    return f"{compact[0]}.{compact[1]}.{compact[2]}.{compact[3]}:{int.from_bytes(compact[4:6])}"


class PeerStore:
    """Announced peers per key, like record-cache: two generations, optional max age.

    A record is dropped exactly ``max_age`` seconds after it was last added (the
    simple choice of grape-http-api.md section 8.9), or never when ``max_age`` is
    None (the CLI default, section 6). As in record-cache, when more than
    ``max_size`` new records were added the older generation is dropped.
    """

    def __init__(self, max_age: float | None = None,
                 max_size: int = PEER_STORE_MAX_SIZE) -> None:
        self.max_age = max_age
        self.max_size = max_size
        self._fresh: dict[bytes, dict[bytes, float]] = {}
        self._stale: dict[bytes, dict[bytes, float]] = {}
        self._fresh_size = 0
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return self._fresh_size + sum(len(s) for s in self._stale.values())

    def add(self, key: bytes, peer: bytes, now: float) -> None:
        """Add or refresh ``peer`` (6-byte compact form) under ``key``."""
        self._maybe_sweep(now)
        stale = self._stale.get(key)
        if stale is not None and stale.pop(peer, None) is not None and not stale:
            del self._stale[key]
        fresh = self._fresh.setdefault(key, {})
        if peer not in fresh:
            self._fresh_size += 1
        fresh[peer] = now
        if self._fresh_size > self.max_size:
            self._stale, self._fresh, self._fresh_size = self._fresh, {}, 0

    def get(self, key: bytes, now: float, limit: int = MAX_LOOKUP,
            rng: random.Random | None = None) -> list[bytes]:
        """Up to ``limit`` distinct live peers of ``key``, a random subset in random order."""
        self._maybe_sweep(now)
        found: list[bytes] = []
        for generation in (self._fresh, self._stale):
            peers = generation.get(key)
            if peers:
                found.extend(p for p, t in peers.items() if not self._expired(t, now))
        if len(found) <= 1:
            return found
        return (rng or random).sample(found, min(limit, len(found)))

    def _expired(self, added: float, now: float) -> bool:
        return self.max_age is not None and now - added >= self.max_age

    def _maybe_sweep(self, now: float) -> None:
        # Amortised: at most one full pass per max_age, so memory stays bounded.
        if self.max_age is None or now < self._next_sweep:
            return
        self._next_sweep = now + self.max_age
        for generation in (self._fresh, self._stale):
            for key in list(generation):
                peers = generation[key]
                for peer in [p for p, t in peers.items() if self._expired(t, now)]:
                    del peers[peer]
                    if generation is self._fresh:
                        self._fresh_size -= 1
                if not peers:
                    del generation[key]


@dataclass(frozen=True, slots=True)
class StoredValue:
    """A put value as ``get`` reports it: ``res.v.toString()`` (section 5).

    Attributes:
        text: the string ``get`` returns as ``v``, or None if toString throws.
        error: the JS error text when toString throws (real Grape crashes there;
            localgrape answers it as a 500).
    """

    text: str | None
    error: str | None = None


class ValueStore:
    """bittorrent-dht's ``_values``: an LRU of immutable values by hex target."""

    def __init__(self, max_size: int = VALUE_STORE_MAX_SIZE) -> None:
        self.max_size = max_size
        self._values: OrderedDict[bytes, StoredValue] = OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    def set(self, target: bytes, value: StoredValue) -> None:
        """Store (or replace) ``value`` under ``target``, evicting the least recent."""
        self._values[target] = value
        self._values.move_to_end(target)
        while len(self._values) > self.max_size:
            self._values.popitem(last=False)

    def get(self, target: bytes) -> StoredValue | None:
        """The value under ``target`` (marking it recently used), or None."""
        value = self._values.get(target)
        if value is not None:
            self._values.move_to_end(target)
        return value


# --- Operations: what the HTTP core asks of the DHT -------------------------


@dataclass(frozen=True, slots=True)
class Lookup:
    """Find the peers announced under ``key`` (the name's UTF-8 bytes, section 2)."""

    key: bytes


@dataclass(frozen=True, slots=True)
class Announce:
    """Announce ``port`` (already range-checked, 0 already replaced) under ``key``."""

    key: bytes
    port: int


@dataclass(frozen=True, slots=True)
class PutImmutable:
    """Store an immutable value under ``target`` = sha1(bencode(v)) (section 5).

    Attributes:
        target: the 20-byte key.
        value: what a later get returns.
        encoded_v: ``v`` as it would travel in a KRPC put (for a network layer).
    """

    target: bytes
    value: StoredValue
    encoded_v: bytes


@dataclass(frozen=True, slots=True)
class PutMutable:
    """A validated BEP 44 put; no CLI grape can store one (section 5).

    The fields are what bittorrent-dht ``_put`` sends in its KRPC ``put``.

    Attributes:
        target: sha1(k + salt), answered as hex when a node stores the item.
        encoded_v: ``v`` bencoded as the JS bencoder does.
        k: the ed25519 public key (32 bytes).
        sig: the signature, whatever its length (checked by other nodes only).
        seq: the sequence number (JS bencode truncates ``1.5`` to 1).
        salt: the salt, empty for none.
        cas: the compare-and-swap sequence number, or None.
    """

    target: bytes
    encoded_v: bytes = b""
    k: bytes = b""
    sig: bytes = b""
    seq: int = 0
    salt: bytes = b""
    cas: int | None = None


@dataclass(frozen=True, slots=True)
class Get:
    """Fetch the value under ``target``; ``use_cache`` is False for ``cache: false``."""

    target: bytes
    use_cache: bool = True


Op = Lookup | Announce | PutImmutable | PutMutable | Get


@dataclass(frozen=True, slots=True)
class DhtFailure:
    """A DHT error whose message Grape answers as a JSON string.

    Attributes:
        message: the error text (``"No nodes to query"``, ``"All queries failed"``).
        status: the HTTP status: 200, except for the BEP 44 301/302 errors a node
            answered to a mutable put, which Grape uses as the status (section 5).
    """

    message: str
    status: int = 200


@dataclass(frozen=True, slots=True)
class GetHit:
    """A found value: the answering node's id (hex), its token (hex or None), the value."""

    node_id: str
    token: str | None
    value: StoredValue


# Lookup -> list of "ip:port"; Announce/Put -> acknowledging node count or failure;
# Get -> hit or None.
Outcome = list[str] | int | DhtFailure | GetHit | None


class Dht(Protocol):
    """The DHT behind the HTTP API: :class:`LocalDht` or the KRPC ``NetworkDht``."""

    @property
    def dht_port(self) -> int:
        """The bound UDP port, announced for port 0 (section 3)."""
        ...

    async def execute(self, op: Op, now: float) -> Outcome:
        """Run ``op`` (started at time ``now``, seconds) and report its outcome."""
        ...


class LocalDht:
    """The DHT of a lone grape: it stores locally and reaches no other node.

    This reproduces a real grape with no reachable peers (``--bn ''``,
    grape-http-api.md section 7) without any I/O, for :func:`~localgrape.dispatch`
    and unit tests; ``serve`` runs a ``NetworkDht``, which answers the same when
    alone. Announce and put answer ``"No nodes to query"``
    but the record or value is still held here; lookups and gets see what this
    node holds. Without a bind address the node does not store its own announces
    (section 4).
    """

    def __init__(self, *, dht_port: int, bind: str | None,
                 announce_max_age_ms: int | None = None,
                 node_id: bytes | None = None, rng: random.Random | None = None) -> None:
        self._dht_port = dht_port
        self.bind = bind
        self.node_id = node_id if node_id is not None else os.urandom(20)
        self.node_id_hex = self.node_id.hex()
        max_age = None if not announce_max_age_ms else announce_max_age_ms / 1000
        self.peers = PeerStore(max_age)
        self.values = ValueStore()
        self._rng = rng or random.Random()

    @property
    def dht_port(self) -> int:
        """The bound UDP port."""
        return self._dht_port

    async def execute(self, op: Op, now: float) -> Outcome:
        """Run ``op`` on the local stores (the Dht protocol); never blocks."""
        return self.execute_nowait(op, now)

    def execute_nowait(self, op: Op, now: float) -> Outcome:
        """Run ``op`` at time ``now`` (seconds) on the local stores."""
        if isinstance(op, Lookup):
            return [decode_peer(p) for p in self.peers.get(op.key, now, rng=self._rng)]
        if isinstance(op, Announce):
            # bittorrent-dht stores its own record only when it has a host (-b).
            if self.bind is not None:
                self.peers.add(op.key, encode_peer(self.bind, op.port), now)
            return DhtFailure(NO_NODES)
        if isinstance(op, PutImmutable):
            self.values.set(op.target, op.value)
            return DhtFailure(NO_NODES)
        if isinstance(op, PutMutable):
            return DhtFailure(NO_NODES)
        value = self.values.get(op.target) if op.use_cache else None
        if value is None:
            return None
        return GetHit(self.node_id_hex, None, value)
