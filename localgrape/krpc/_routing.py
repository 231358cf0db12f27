"""Kademlia routing table: 160 k-buckets by XOR distance, pure (time is an argument).

The bucket for a contact is the index of the highest bit of ``local_id XOR id``
(bucket 159 holds the far half of the id space). Each bucket keeps at most ``k``
contacts, least recently seen first. When a bucket is full, :meth:`add` returns
the least recently seen contact so the caller can ping it: if that ping fails
(:meth:`record_failure`), it is evicted and the best waiting replacement takes
its place -- the Kademlia rule that bittorrent-dht implements with k-bucket's
``ping`` event and ``_checkNodes``/``swap`` (client.js, "received ping").

Differences from k-bucket 5.1.0, on purpose:

* Distance is exact (k-bucket folds XOR bytes into a JS double and loses
  precision after about 6 bytes).
* A new id from an ``(host, port)`` already in the table replaces the old
  contact: one UDP endpoint is one node. This avoids grape's "restart quirk"
  (grape-http-api.md section 7), where a restarted peer's stale id lingers.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from ._messages import ID_LENGTH, NodeInfo

__all__ = ["AddResult", "AddStatus", "Contact", "RoutingTable", "distance_key"]

K: int = 20
"""Bucket size, BEP 5 / k-rpc ``K``."""


def distance_key(node_id: bytes, target: bytes) -> int:
    """XOR distance of ``node_id`` to ``target``, usable as a sort key.

    ``target`` may have any length (grape uses raw service names as keys). Like
    k-bucket ``distance``, bytes beyond the shorter of the two count as 0xFF for
    every node, so only the common prefix decides the order.
    """
    n = min(len(node_id), len(target))
    a = int.from_bytes(node_id[:n], "big") ^ int.from_bytes(target[:n], "big")
    pad = max(len(node_id), len(target)) - n
    return (a << (8 * pad)) | ((1 << (8 * pad)) - 1)


class AddStatus(enum.Enum):
    """Outcome of :meth:`RoutingTable.add`."""

    ADDED = "added"
    UPDATED = "updated"
    FULL = "full"
    IGNORED = "ignored"


@dataclass(frozen=True)
class AddResult:
    """What :meth:`RoutingTable.add` did.

    Attributes:
        status: ADDED, UPDATED (already known; last-seen refreshed), FULL (kept
            as a replacement candidate) or IGNORED (own id / bad id / port 0).
        ping: for FULL, the least recently seen contact of that bucket, which
            the caller should ping and report through :meth:`record_failure`
            or :meth:`add` (refresh).
        replaced: a contact removed because the same address showed a new id.
    """

    status: AddStatus
    ping: NodeInfo | None = None
    replaced: NodeInfo | None = None


@dataclass
class Contact:
    """A routing-table entry."""

    node: NodeInfo
    last_seen: float
    failures: int = 0


@dataclass
class _Bucket:
    contacts: OrderedDict[bytes, Contact] = field(default_factory=OrderedDict)
    replacements: OrderedDict[bytes, Contact] = field(default_factory=OrderedDict)


class RoutingTable:
    """Kademlia k-buckets around ``local_id``.

    Args:
        local_id: this node's 20-byte id.
        k: contacts per bucket (also the size of each replacement cache).
        failures_to_evict: consecutive failures before a contact is dropped.
            bittorrent-dht drops a node after one timed-out query (k-rpc
            ``_closest``: ``if (err.code === 'ETIMEDOUT') self.nodes.remove``).
    """

    def __init__(self, local_id: bytes, *, k: int = K, failures_to_evict: int = 1) -> None:
        if len(local_id) != ID_LENGTH:
            raise ValueError("local id must be 20 bytes")
        if k < 1 or failures_to_evict < 1:
            raise ValueError("k and failures_to_evict must be positive")
        self.local_id = local_id
        self.k = k
        self.failures_to_evict = failures_to_evict
        self._buckets = [_Bucket() for _ in range(8 * ID_LENGTH)]
        self._by_address: dict[tuple[str, int], bytes] = {}
        self.last_change = 0.0

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._by_address)

    def __iter__(self) -> Iterator[NodeInfo]:
        for bucket in self._buckets:
            for contact in bucket.contacts.values():
                yield contact.node

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, bytes) and self.get(node_id) is not None

    def bucket_index(self, node_id: bytes) -> int:
        """Index of the bucket ``node_id`` belongs to (0..159); -1 for our own id."""
        xor = int.from_bytes(node_id, "big") ^ int.from_bytes(self.local_id, "big")
        return xor.bit_length() - 1

    def get(self, node_id: bytes) -> NodeInfo | None:
        """The contact with ``node_id``, if present."""
        contact = self._contact(node_id)
        return contact.node if contact else None

    def contact(self, node_id: bytes) -> Contact | None:
        """The full entry (with last-seen time and failures) for ``node_id``."""
        return self._contact(node_id)

    def closest(self, target: bytes, n: int | None = None) -> list[NodeInfo]:
        """The ``n`` (default ``k``) known contacts closest to ``target`` by XOR.

        Args:
            target: any byte string (20-byte ids or raw grape keys).
            n: how many to return.
        """
        count = self.k if n is None else n
        contacts = [c.node for b in self._buckets for c in b.contacts.values()]
        contacts.sort(key=lambda node: (distance_key(node.id, target), node.id))
        return contacts[:max(count, 0)]

    def stale(self, now: float, max_age: float) -> list[NodeInfo]:
        """Contacts not heard from for more than ``max_age`` seconds."""
        return [c.node for b in self._buckets for c in b.contacts.values()
                if now - c.last_seen > max_age]

    # ------------------------------------------------------------------ updates

    def add(self, node: NodeInfo, now: float) -> AddResult:
        """Insert ``node`` or refresh its last-seen time (we just heard from it).

        Args:
            node: the contact; its id must be 20 bytes and differ from ours.
            now: the current time, in seconds.

        Returns:
            What happened; see :class:`AddResult`.
        """
        if len(node.id) != ID_LENGTH or node.id == self.local_id or node.port == 0:
            return AddResult(AddStatus.IGNORED)
        replaced = None
        old_id = self._by_address.get(node.address)
        if old_id is not None and old_id != node.id:
            replaced = self.get(old_id)
            self.remove(old_id)
        bucket = self._buckets[self.bucket_index(node.id)]
        contact = bucket.contacts.get(node.id)
        if contact is not None:
            if contact.node.address != node.address:
                # Same id from a new address: follow the node (k-rpc keeps the
                # old address; we prefer the one that just answered).
                del self._by_address[contact.node.address]
                self._by_address[node.address] = node.id
                contact.node = node
            contact.last_seen = now
            contact.failures = 0
            bucket.contacts.move_to_end(node.id)
            return AddResult(AddStatus.UPDATED, replaced=replaced)
        if len(bucket.contacts) < self.k:
            bucket.contacts[node.id] = Contact(node, now)
            self._by_address[node.address] = node.id
            bucket.replacements.pop(node.id, None)
            self.last_change = now
            return AddResult(AddStatus.ADDED, replaced=replaced)
        bucket.replacements[node.id] = Contact(node, now)
        bucket.replacements.move_to_end(node.id)
        while len(bucket.replacements) > self.k:
            bucket.replacements.popitem(last=False)
        oldest = next(iter(bucket.contacts.values()))
        return AddResult(AddStatus.FULL, ping=oldest.node, replaced=replaced)

    def record_failure(self, node_id: bytes, now: float | None = None) -> bool:
        """Count a failed query to ``node_id``; evict it after enough failures.

        An evicted contact is replaced by the most recently seen replacement
        candidate of its bucket, if any.

        Returns:
            True if the contact was evicted.
        """
        contact = self._contact(node_id)
        if contact is None:
            return False
        contact.failures += 1
        if contact.failures < self.failures_to_evict:
            return False
        self.remove(node_id)
        bucket = self._buckets[self.bucket_index(node_id)]
        while bucket.replacements and len(bucket.contacts) < self.k:
            rid, candidate = bucket.replacements.popitem(last=True)
            if candidate.node.address in self._by_address:
                continue
            bucket.contacts[rid] = candidate
            self._by_address[candidate.node.address] = rid
        if now is not None:
            self.last_change = now
        return True

    def remove(self, node_id: bytes) -> bool:
        """Drop ``node_id`` unconditionally. Returns True if it was present."""
        if len(node_id) != ID_LENGTH or node_id == self.local_id:
            return False
        bucket = self._buckets[self.bucket_index(node_id)]
        contact = bucket.contacts.pop(node_id, None)
        bucket.replacements.pop(node_id, None)
        if contact is None:
            return False
        self._by_address.pop(contact.node.address, None)
        return True

    def _contact(self, node_id: bytes) -> Contact | None:
        if len(node_id) != ID_LENGTH or node_id == self.local_id:
            return None
        return self._buckets[self.bucket_index(node_id)].contacts.get(node_id)
