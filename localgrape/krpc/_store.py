"""What a KRPC node remembers for others: announced peers and BEP 44 items. Pure.

This is the interface the HTTP layer (``/announce``, ``/lookup``, ``/put``,
``/get``) will share with :class:`~localgrape.krpc.KrpcNode`:

* peers: ``add_peer(key, peer, now)`` / ``peers(key, now, limit)``, keys are raw
  bytes (grape uses the UTF-8 service name itself, grape-http-api.md section 2);
* items: ``put_immutable`` / ``put_mutable`` / ``get_item`` keyed by the 20-byte
  BEP 44 target.

Expiry: with ``peer_max_age=None`` records never expire, like a CLI-default
grape (grape-http-api.md section 6); otherwise a record expires exactly
``peer_max_age`` seconds after its last announce (the "simple compatible
choice" of section 8, item 9). Sizes are bounded like bittorrent-dht's
(``maxPeers`` 10000 via record-cache, ``maxValues`` LRU).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ._errors import CAS_MISMATCH, SEQ_LESS_THAN_CURRENT
from ._messages import BValue, PeerInfo, immutable_target, mutable_target

__all__ = ["KrpcStore", "PutRejected", "StoredItem"]


@dataclass(frozen=True)
class StoredItem:
    """A BEP 44 item. Immutable items have ``k``/``sig``/``seq`` None.

    Attributes:
        v: the value.
        id: the id of the node that put it (bittorrent-dht keeps it too).
        k: ed25519 public key (mutable only).
        sig: signature over :func:`~localgrape.krpc.signature_data`.
        seq: sequence number (mutable only).
        salt: optional salt (mutable only).
    """

    v: BValue
    id: bytes
    k: bytes | None = None
    sig: bytes | None = None
    seq: int | None = None
    salt: bytes | None = None

    @property
    def is_mutable(self) -> bool:
        """True for a mutable item."""
        return self.k is not None


class PutRejected(Exception):
    """A put refused with a KRPC error (BEP 44 301 / 302).

    Attributes:
        code: the KRPC error code.
        message: the error text (bittorrent-dht's wording).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class KrpcStore:
    """Announced peers per key, and BEP 44 items.

    Args:
        peer_max_age: seconds a peer record lives after its last announce, or
            None to keep records until evicted for space.
        max_peers: peer records kept in total; the least recently announced
            go first (bittorrent-dht ``maxPeers`` default 10000).
        max_items: items kept; least recently used go first (``maxValues``).
    """

    def __init__(self, *, peer_max_age: float | None = None, max_peers: int = 10000,
                 max_items: int = 5000) -> None:
        self.peer_max_age = peer_max_age
        self.max_peers = max_peers
        self.max_items = max_items
        # (key, peer) -> last announce time, oldest first.
        self._records: OrderedDict[tuple[bytes, PeerInfo], float] = OrderedDict()
        # key -> peers, most recently announced last.
        self._by_key: dict[bytes, OrderedDict[PeerInfo, None]] = {}
        self._items: OrderedDict[bytes, StoredItem] = OrderedDict()

    # ------------------------------------------------------------------ peers

    def add_peer(self, key: bytes, peer: PeerInfo, now: float) -> None:
        """Record (or refresh) that ``peer`` serves ``key`` at time ``now``."""
        self.expire(now)
        record = (key, peer)
        self._records[record] = now
        self._records.move_to_end(record)
        peers = self._by_key.setdefault(key, OrderedDict())
        peers[peer] = None
        peers.move_to_end(peer)
        while len(self._records) > self.max_peers:
            (old_key, old_peer), _ = self._records.popitem(last=False)
            self._unlink(old_key, old_peer)

    def remove_peer(self, key: bytes, peer: PeerInfo) -> bool:
        """Forget one record. Returns True if it existed."""
        if self._records.pop((key, peer), None) is None:
            return False
        self._unlink(key, peer)
        return True

    def peers(self, key: bytes, now: float, limit: int | None = None) -> list[PeerInfo]:
        """Peers announced for ``key``, most recently announced first.

        Args:
            key: the raw key.
            now: the current time, for expiry.
            limit: at most this many (grape's ``/lookup`` returns 100).
        """
        self.expire(now)
        peers = self._by_key.get(key)
        if not peers:
            return []
        result = list(reversed(peers))
        return result if limit is None else result[:max(limit, 0)]

    def keys(self) -> list[bytes]:
        """Every key with at least one record."""
        return list(self._by_key)

    def peer_count(self) -> int:
        """Total peer records."""
        return len(self._records)

    def expire(self, now: float) -> None:
        """Drop records older than ``peer_max_age`` (no-op without an age)."""
        if self.peer_max_age is None:
            return
        cutoff = now - self.peer_max_age
        while self._records:
            (key, peer), seen = next(iter(self._records.items()))
            if seen > cutoff:
                break
            del self._records[(key, peer)]
            self._unlink(key, peer)

    def _unlink(self, key: bytes, peer: PeerInfo) -> None:
        peers = self._by_key.get(key)
        if peers is not None:
            peers.pop(peer, None)
            if not peers:
                del self._by_key[key]

    # ------------------------------------------------------------------ items

    def put_immutable(self, v: BValue, sender_id: bytes) -> bytes:
        """Store an immutable item. Returns its target, SHA-1 of bencoded ``v``."""
        target = immutable_target(v)
        self._set(target, StoredItem(v, sender_id))
        return target

    def put_mutable(self, item: StoredItem, cas: int | None = None) -> bytes:
        """Store an already-verified mutable item (BEP 44).

        Args:
            item: the item; ``k`` and ``seq`` must be set.
            cas: if given, the put only succeeds when the stored ``seq`` equals it.

        Returns:
            The target, SHA-1 of ``k`` + ``salt``.

        Raises:
            PutRejected: 301 on CAS mismatch, 302 when ``seq`` is not newer
                (checks and texts of bittorrent-dht ``_onput``).
            ValueError: ``item`` lacks ``k`` or ``seq``.
        """
        if item.k is None or item.seq is None:
            raise ValueError("a mutable item needs k and seq")
        target = mutable_target(item.k, item.salt)
        prev = self._items.get(target)
        if prev is not None and cas is not None and prev.seq != cas:
            raise PutRejected(CAS_MISMATCH, "CAS mismatch, re-read and try again")
        if prev is not None and prev.seq is not None and not item.seq > prev.seq:
            raise PutRejected(SEQ_LESS_THAN_CURRENT, "sequence number less than current")
        self._set(target, item)
        return target

    def get_item(self, target: bytes) -> StoredItem | None:
        """The item stored under ``target``, if any (refreshes its LRU position)."""
        item = self._items.get(target)
        if item is not None:
            self._items.move_to_end(target)
        return item

    def item_count(self) -> int:
        """Items held."""
        return len(self._items)

    def _set(self, target: bytes, item: StoredItem) -> None:
        self._items[target] = item
        self._items.move_to_end(target)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
