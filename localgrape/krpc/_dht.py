"""A DHT node that joins a network of grapes: what Grape's HTTP endpoints do on the DHT.

:class:`Dht` owns a :class:`~localgrape.krpc.KrpcNode` and offers one method per
Grape endpoint, each returning what the HTTP layer answers
(grape-http-api.md sections 2-5):

* :meth:`Dht.lookup`: Grape.js ``lookup`` -> bittorrent-dht ``lookup``
  (``get_peers`` traversal), merged with this node's own records, at most 100.
  Concurrent lookups of one name share one traversal (Grape.js ``cbq0``).
* :meth:`Dht.announce`: bittorrent-dht ``announce``: a ``get_peers`` traversal,
  the own record stored locally, then ``announce_peer`` to the ``k`` closest
  nodes that handed out a token (k-rpc ``queryAll``). The answer is the number of
  other nodes that acknowledged, or ``"No nodes to query"`` / ``"All queries
  failed"``.
* :meth:`Dht.put` / :meth:`Dht.put_mutable`: bittorrent-dht ``_put`` (a ``get``
  traversal, then ``put`` to the token holders); immutable values are also kept
  locally.
* :meth:`Dht.get`: bittorrent-dht ``get``: the local value first, else a ``get``
  traversal that stops at the first value matching the hash.

Unlike bittorrent-dht, which caches the token table of a target for 5 minutes
(``_tables``), every announce and put runs a fresh traversal: one extra round
trip (about 1 ms on loopback) that avoids announcing to stale nodes.

Dead nodes (section 7): a real grape re-queries a dead bootstrap address on
every traversal (2 s each). Here an address that timed out is remembered as
*suspect* and not queried again by traversals; a bootstrap address stays
suspect until it answers, and :meth:`Dht.run` re-tries suspect or missing
bootstrap addresses in the background every ``bootstrap_retry`` seconds, so a
restarted peer is found again without costing any request a timeout. Other
suspects are forgiven after ``suspect_ttl`` seconds or as soon as we hear from
them.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from ._errors import KrpcQueryError, KrpcRemoteError
from ._messages import (
    AnnouncePeer,
    BValue,
    FindNode,
    GetItem,
    GetPeers,
    PeerInfo,
    Ping,
    PutItem,
    Query,
    Response,
    immutable_target,
    mutable_target,
    signature_data,
)
from ._node import DatagramTransport, KrpcNode
from ._traversal import TokenNode, Traversal, TraversalResult, Visitor, run_traversal

__all__ = [
    "ALL_QUERIES_FAILED",
    "BOOTSTRAP_RETRY",
    "MAX_LOOKUP",
    "NO_NODES_TO_QUERY",
    "Dht",
    "DhtStatistics",
    "GetResult",
]

Address = tuple[str, int]

NO_NODES_TO_QUERY = "No nodes to query"
"""k-rpc ``queryAll`` with an empty node list."""
ALL_QUERIES_FAILED = "All queries failed"
"""k-rpc ``queryAll`` when no node acknowledged (and none sent a 3xx error)."""
MAX_LOOKUP = 100
"""Grape.js ``lookup``: ``this._mem.get(ih, 100)``."""
BOOTSTRAP_RETRY: float = 5.0
"""Seconds between background re-tries of suspect or missing bootstrap addresses."""
NODE_LIVENESS: float = 5 * 60.0
"""Grape ``dht_nodeLiveness`` default (5 min): contacts silent longer are pinged."""
REFRESH_INTERVAL: float = 60.0
"""bittorrent-dht ``_setBucketCheckInterval``: check the table about every minute."""
SUSPECT_TTL: float = 60.0


@dataclass(frozen=True)
class GetResult:
    """A value found by :meth:`Dht.get` (bittorrent-dht ``createGetResponse`` / ``r``).

    Attributes:
        id: the id of the node that answered (ours for a local hit).
        token: that node's write token; None for a local hit (Grape answers null).
        v: the value as bencode decodes it (strings are bytes).
        k: ed25519 public key (mutable items only).
        sig: signature (mutable items only).
        seq: sequence number (mutable items only).
        local: True if this node held the value.
    """

    id: bytes
    token: bytes | None
    v: BValue
    k: bytes | None = None
    sig: bytes | None = None
    seq: int | None = None
    local: bool = False


@dataclass(frozen=True)
class DhtStatistics:
    """A snapshot of a :class:`Dht` (trio-style ``statistics()``).

    Attributes:
        traversals: traversals run since creation.
        lookups_merged: lookups answered by joining a traversal already running.
        suspects: addresses currently not queried because they timed out.
        routing_table_size: contacts in the routing table.
    """

    traversals: int
    lookups_merged: int
    suspects: int
    routing_table_size: int


@dataclass
class _SharedLookup:
    done: trio.Event = field(default_factory=trio.Event)
    result: list[str] = field(default_factory=list)


def _format_peers(peers: Sequence[PeerInfo], rng: random.Random) -> list[str]:
    unique = list(dict.fromkeys(f"{p.host}:{p.port}" for p in peers))
    if len(unique) > MAX_LOOKUP:
        # record-cache `get(key, 100)` returns a random subset (section 2).
        unique = rng.sample(unique, MAX_LOOKUP)
    return unique


class Dht:
    """A localgrape DHT node: the network side of Grape's four endpoints.

    Typical use::

        dht = Dht(bootstrap=[("127.0.0.1", 20001)])
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(dht.run)
            await dht.wait_ready()
            count = await dht.announce(b"rest:net:util", 5001)

    Args:
        host: the UDP bind address.
        port: the UDP port (0 picks one).
        bootstrap: ``--bn`` addresses.
        record_host: Grape's ``-b``: the host of this node's own records (stored
            locally on announce). None stores none (a grape without ``-b``,
            section 4).
        node: the KRPC node to use (a fresh one by default).
        transport: a datagram transport to serve on instead of binding
            ``host``/``port`` (tests use an in-memory network).
        bootstrap_retry: seconds between background re-tries of bootstrap
            addresses that are suspect or missing from the routing table.
        refresh_interval: seconds (jittered x0.5-1.5) between routing-table checks.
        node_liveness: contacts silent for longer are pinged (and dropped if dead).
        suspect_ttl: seconds a non-bootstrap address that timed out is skipped.
        rng: randomness for jitter and for picking 100 of many peers.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 bootstrap: Sequence[Address] = (), record_host: str | None = "127.0.0.1",
                 node: KrpcNode | None = None, transport: DatagramTransport | None = None,
                 bootstrap_retry: float = BOOTSTRAP_RETRY,
                 refresh_interval: float = REFRESH_INTERVAL,
                 node_liveness: float = NODE_LIVENESS, suspect_ttl: float = SUSPECT_TTL,
                 rng: random.Random | None = None) -> None:
        self.node = node if node is not None else KrpcNode()
        self.host = host
        self.port = port
        self.bootstrap_nodes: list[Address] = list(dict.fromkeys(bootstrap))
        self.record_host = record_host
        self.bootstrap_retry = bootstrap_retry
        self.refresh_interval = refresh_interval
        self.node_liveness = node_liveness
        self.suspect_ttl = suspect_ttl
        self._transport = transport
        self._rng = rng if rng is not None else random.Random()
        self._nursery: trio.Nursery | None = None
        self._ready = trio.Event()
        self._lookups: dict[bytes, _SharedLookup] = {}
        # address -> time of its last timeout (see the module docstring).
        self._suspects: dict[Address, float] = {}
        self._traversals = 0
        self._merged = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def address(self) -> Address:
        """The bound UDP ``(host, port)``.

        Raises:
            RuntimeError: the DHT is not running.
        """
        return self.node.address

    async def run(self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve the node, bootstrap, and keep the routing table, until cancelled.

        ``started()`` is called with the bound address as soon as the socket is
        bound (Grape starts its HTTP API before the DHT is ready too); the
        initial bootstrap runs in the background, see :meth:`wait_ready`.
        """
        if self._nursery is not None:
            raise RuntimeError("Dht is already running")
        try:
            async with trio.open_nursery() as nursery:
                if self._transport is not None:
                    address = await nursery.start(self.node.serve_transport, self._transport)
                else:
                    address = await nursery.start(self.node.serve, self.host, self.port)
                self._nursery = nursery
                nursery.start_soon(self._initial_bootstrap)
                nursery.start_soon(self._retry_bootstrap_loop)
                nursery.start_soon(self._refresh_loop)
                task_status.started(address)
        finally:
            self._nursery = None
            for shared in self._lookups.values():
                shared.done.set()
            self._lookups.clear()

    @property
    def ready(self) -> bool:
        """True once the initial bootstrap finished (see :meth:`wait_ready`)."""
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        """Wait until the initial bootstrap finished (bittorrent-dht ``ready``).

        With dead bootstrap nodes this takes one query timeout (2 s).
        """
        await self._ready.wait()

    def statistics(self) -> DhtStatistics:
        """Counters since creation."""
        now = trio.current_time()
        return DhtStatistics(
            traversals=self._traversals, lookups_merged=self._merged,
            suspects=sum(self._is_suspect(a, now) for a in list(self._suspects)),
            routing_table_size=len(self.node.routing))

    def _require_nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("Dht is not running")
        return self._nursery

    async def _initial_bootstrap(self) -> None:
        try:
            if self.bootstrap_nodes:
                await self.bootstrap(self.bootstrap_nodes)
        finally:
            self._ready.set()

    async def _retry_bootstrap_loop(self) -> None:
        await self._ready.wait()
        while True:
            await trio.sleep(self.bootstrap_retry)
            now = trio.current_time()
            known = {n.address for n in self.node.routing}
            missing = [a for a in self.bootstrap_nodes
                       if a not in known or self._is_suspect(a, now)]
            if missing:
                await self._revive(missing)

    async def _revive(self, addresses: list[Address]) -> None:
        """Ping ``addresses``; bootstrap through those that answer."""
        alive: list[Address] = []

        async def ping(address: Address) -> None:
            sent_at = trio.current_time()
            try:
                await self.node.query(address, Ping(self.node.id))
            except KrpcQueryError:
                self._suspects[address] = sent_at
            else:
                self._suspects.pop(address, None)
                alive.append(address)

        async with trio.open_nursery() as nursery:
            for address in addresses:
                nursery.start_soon(ping, address)
        if alive:
            await self.bootstrap(alive)

    async def _refresh_loop(self) -> None:
        """bittorrent-dht ``_setBucketCheckInterval``: drop contacts that went silent."""
        while True:
            await trio.sleep(self.refresh_interval * (0.5 + self._rng.random()))
            stale = self.node.routing.stale(trio.current_time(), self.node_liveness)

            async def check(node_id: bytes, address: Address) -> None:
                # A timeout or another id at the address evicts the contact
                # (KrpcNode.query, bittorrent-dht `_checkAndRemoveNodes`).
                with contextlib.suppress(KrpcQueryError):
                    await self.node.query(address, Ping(self.node.id), expected_id=node_id)

            async with trio.open_nursery() as nursery:
                for contact in stale:
                    nursery.start_soon(check, contact.id, contact.address)

    # ------------------------------------------------------------------ suspects

    def _is_suspect(self, address: Address, now: float) -> bool:
        failed_at = self._suspects.get(address)
        if failed_at is None:
            return False
        for node in self.node.routing:
            if node.address == address:
                contact = self.node.routing.contact(node.id)
                if contact is not None and contact.last_seen > failed_at:
                    del self._suspects[address]  # heard from it since (e.g. it queried us)
                    return False
        if address not in self.bootstrap_nodes and now - failed_at > self.suspect_ttl:
            del self._suspects[address]
            return False
        return True

    def dead_bootstrap_nodes(self) -> list[Address]:
        """Bootstrap addresses that timed out and have not been heard from since.

        Traversals skip them; :meth:`run` keeps re-trying them in the background.
        """
        now = trio.current_time()
        return [a for a in self.bootstrap_nodes if self._is_suspect(a, now)]

    def _anyone_to_ask(self, now: float) -> bool:
        """Whether a traversal would query anybody: a known node or a live bootstrap."""
        if len(self.node.routing):
            return True
        local = self._local_addresses()
        return any(address not in local and not self._is_suspect(address, now)
                   for address in self.bootstrap_nodes)

    def _local_addresses(self) -> frozenset[Address]:
        host, port = self.node.address
        return frozenset({(host, port), ("127.0.0.1", port)})

    async def _traverse(self, target: bytes, query: Query, *, visit: Visitor | None = None,
                        bootstrap: Sequence[Address] | None = None,
                        skip_suspects: bool = True) -> TraversalResult:
        now = trio.current_time()
        traversal = Traversal(
            target, self.node.routing,
            self.bootstrap_nodes if bootstrap is None else bootstrap,
            skip=(lambda a: self._is_suspect(a, now)) if skip_suspects else (lambda a: False),
            local_addresses=self._local_addresses())
        self._traversals += 1
        result = await run_traversal(self.node, traversal, query, visit=visit)
        for address in result.timed_out:
            # The start of the traversal, not its end: a node heard from while our
            # query was in flight (say a grape that started after we queried its
            # address and then bootstrapped to us) is alive, see `_is_suspect`.
            self._suspects[address] = now
        for address in result.responders:
            self._suspects.pop(address, None)
        return result

    async def _query_all(self, nodes: Sequence[TokenNode],
                         make: Callable[[bytes], Query]) -> int | KrpcRemoteError | str:
        """k-rpc ``queryAll``: ask every node at once, count the acknowledgements."""
        if not nodes:
            return NO_NODES_TO_QUERY
        hits = 0
        error: KrpcRemoteError | None = None

        async def one(target: TokenNode) -> None:
            nonlocal hits, error
            try:
                await self.node.query(target.node.address, make(target.token))
            except KrpcRemoteError as exc:
                if 300 <= exc.code < 400:  # queryAll keeps 3xx errors (BEP 44 301/302)
                    error = exc
            except KrpcQueryError:
                pass
            else:
                hits += 1

        async with trio.open_nursery() as nursery:
            for target in nodes:
                nursery.start_soon(one, target)
        if hits:
            return hits
        return error if error is not None else ALL_QUERIES_FAILED

    # ------------------------------------------------------------------ endpoints

    async def bootstrap(self, nodes: Sequence[Address]) -> int:
        """bittorrent-dht ``_bootstrap``: a ``find_node`` traversal for our own id.

        ``nodes`` are queried even if they are suspect (we were asked to).

        Returns:
            How many nodes answered.
        """
        result = await self._traverse(self.node.id, FindNode(self.node.id, self.node.id),
                                      bootstrap=list(nodes), skip_suspects=False)
        return result.responded

    async def lookup(self, name: bytes) -> list[str]:
        """``/lookup``: ``"ip:port"`` of the peers announced under ``name``.

        Merges this node's own store with the ``values`` of every node the
        ``get_peers`` traversal reaches; de-duplicated, at most 100 (a random
        subset beyond that). Concurrent lookups of one name share one traversal.

        Raises:
            RuntimeError: the DHT is not running.
        """
        nursery = self._require_nursery()
        now = trio.current_time()
        if not self._anyone_to_ask(now):
            # A lone node answers from its own store at once, as bittorrent-dht
            # does with an empty table: no task, no traversal (this is most of
            # the cost of a lookup on a lone grape, the common case on one host).
            return _format_peers(self.node.store.peers(name, now), self._rng)
        shared = self._lookups.get(name)
        if shared is None:
            shared = _SharedLookup()
            self._lookups[name] = shared
            nursery.start_soon(self._run_lookup, name, shared)
        else:
            self._merged += 1
        await shared.done.wait()
        return list(shared.result)

    async def _run_lookup(self, name: bytes, shared: _SharedLookup) -> None:
        found: list[PeerInfo] = []

        def visit(response: Response, address: Address) -> bool:
            found.extend(response.values or ())
            return True

        try:
            await self._traverse(name, GetPeers(self.node.id, name), visit=visit)
        finally:
            local = self.node.store.peers(name, trio.current_time())
            shared.result = _format_peers([*local, *found], self._rng)
            if self._lookups.get(name) is shared:
                del self._lookups[name]
            shared.done.set()

    async def announce(self, name: bytes, port: int) -> int | str:
        """``/announce``: publish ``port`` under ``name``.

        Like bittorrent-dht with Grape's ``-b``, the record is stored locally
        first (port 0 means our own DHT port), whatever the network says.

        Args:
            name: the raw key (the UTF-8 service name, not hashed).
            port: 0-65535; 0 announces with ``implied_port`` (the UDP port).

        Returns:
            The number of other nodes that acknowledged (1 in a two-node
            network), ``"No nodes to query"`` or ``"All queries failed"``.

        Raises:
            ValueError: ``port`` is out of range.
            RuntimeError: the DHT is not running.
        """
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port out of range: {port}")
        self._require_nursery()
        if self.record_host is not None:
            # bittorrent-dht `announce`: `this._addPeer({host, port: port || dhtPort})`.
            self.node.store.add_peer(name, PeerInfo(self.record_host, port or self.address[1]),
                                     trio.current_time())
        result = await self._traverse(name, GetPeers(self.node.id, name))
        outcome = await self._query_all(
            result.token_nodes,
            lambda token: AnnouncePeer(self.node.id, name, port, token, implied_port=port == 0))
        return str(outcome) if isinstance(outcome, KrpcRemoteError) else outcome

    async def put(self, v: BValue) -> int | str:
        """``/put`` of an immutable value; the target is ``sha1(bencode(v))``.

        The value is kept locally first (bittorrent-dht ``_put``), so :meth:`get`
        on this node finds it whatever the network says.

        Returns:
            The number of nodes that stored it (Grape then answers the target
            hex), ``"No nodes to query"`` or ``"All queries failed"``.
        """
        self._require_nursery()
        target = self.node.store.put_immutable(v, self.node.id)
        result = await self._traverse(target, GetItem(self.node.id, target))
        outcome = await self._query_all(result.token_nodes,
                                        lambda token: PutItem(self.node.id, token, v))
        return str(outcome) if isinstance(outcome, KrpcRemoteError) else outcome

    async def put_mutable(self, v: BValue, *, k: bytes, sig: bytes, seq: int,
                          salt: bytes | None = None,
                          cas: int | None = None) -> int | str | KrpcRemoteError:
        """``/put`` of a signed BEP 44 item (not stored locally, like bittorrent-dht).

        Returns:
            The number of nodes that stored it, ``"No nodes to query"``, ``"All
            queries failed"`` (every CLI grape refuses: no verifier), or the 3xx
            :class:`KrpcRemoteError` a node answered (Grape answers HTTP status
            ``code`` with body ``"<code> <message>"``).
        """
        self._require_nursery()
        target = mutable_target(k, salt)
        result = await self._traverse(target, GetItem(self.node.id, target))
        return await self._query_all(
            result.token_nodes,
            lambda token: PutItem(self.node.id, token, v, k, sig, seq, salt or None, cas))

    async def get(self, target: bytes, *, salt: bytes | None = None,
                  cache: bool = True) -> GetResult | None:
        """``/get``: the value stored under ``target`` here or on the network.

        Args:
            target: the 20-byte key (Grape: the hex-decoded hash).
            salt: the salt of a mutable item (for signature checks).
            cache: False skips this node's own values (``{cache: false}``).

        Returns:
            The value, or None (Grape answers an empty body).
        """
        self._require_nursery()
        if cache:
            item = self.node.store.get_item(target)
            if item is not None:
                return GetResult(self.node.id, None, item.v, item.k, item.sig, item.seq,
                                 local=True)
        best: GetResult | None = None
        verify = self.node.verify

        def visit(r: Response, address: Address) -> bool:
            nonlocal best
            if r.v is None or r.v == 0:
                # bittorrent-dht `onreply`: `if (!r || !r.v) return true`; of the
                # bencode values only the integer 0 is falsy in JS.
                return True
            if r.k is not None or r.sig is not None:
                # bittorrent-dht `get` `onreply`: verified, matching, highest seq wins.
                if (verify is None or r.k is None or r.sig is None
                        or not verify(r.sig, signature_data(r.v, r.seq or 0, salt), r.k)
                        or mutable_target(r.k, salt) != target):
                    return True
                if best is None or (r.seq or 0) > (best.seq or 0):
                    best = GetResult(r.id, r.token, r.v, r.k, r.sig, r.seq)
                return True
            if immutable_target(r.v) == target:
                best = GetResult(r.id, r.token, r.v)
                return False
            return True

        await self._traverse(target, GetItem(self.node.id, target), visit=visit)
        return best
