"""The DHT that ``serve`` runs: the HTTP operations on a KRPC node (:mod:`localgrape.krpc`).

:class:`NetworkDht` implements the :class:`~localgrape._store.Dht` protocol over
:class:`localgrape.krpc.Dht`, so a localgrape joins other localgrapes and real
grapes (grenache-grape 1.0.0) on the same UDP port a real grape would use:

* ``Lookup``: a ``get_peers`` traversal merged with this node's own records.
* ``Announce``: the own record (with ``-b``), then ``announce_peer`` to the
  nodes that handed out a token; the answer is how many acknowledged, or
  ``"No nodes to query"`` / ``"All queries failed"`` (sections 3 and 7).
* ``PutImmutable`` / ``PutMutable``: BEP 44 ``put`` (no verifier, like the CLI
  grape, so mutable items are refused by every localgrape and grape).
* ``Get``: this node's value first, else a ``get`` traversal.

Values that this node put through HTTP keep the text a real grape's
``res.v.toString()`` gives for the original JSON value (``true`` stays
``"true"``); values that came over the network are converted from their bencoded
form the way Node converts a decoded Buffer, number or array.

State changes of the DHT (joining, joined, alone, a bootstrap node dead or back)
are logged once each, never per packet.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import bencode2
import trio

from ._js import number_to_string
from ._store import (
    Announce,
    DhtFailure,
    Get,
    GetHit,
    Lookup,
    Op,
    Outcome,
    PutImmutable,
    PutMutable,
    StoredValue,
    ValueStore,
    decode_peer,
    encode_peer,
)
from .krpc import (
    ALL_QUERIES_FAILED,
    BOOTSTRAP_RETRY,
    NO_NODES_TO_QUERY,
    QUERY_TIMEOUT,
    BValue,
    DatagramTransport,
    KrpcNode,
    KrpcRemoteError,
    KrpcStore,
)
from .krpc import Dht as KrpcDht

__all__ = ["STATE_CHECK_INTERVAL", "DhtState", "NetworkDht", "bvalue_text"]

log = logging.getLogger("localgrape")

Address = tuple[str, int]

STATE_CHECK_INTERVAL: Final = 1.0
"""Seconds between background checks of the DHT state (for the log only)."""
PEER_RATE: Final = 1000.0
"""Datagrams per second accepted from one address. A real grape has no limit, and a
peer grape under HTTP load sends two or three datagrams per request, so the
limit is far above :class:`~localgrape.krpc.KrpcNode`'s default; it still bounds
what one flooding address costs."""
PEER_BURST: Final = 2000.0
GLOBAL_RATE: Final = 20000.0
_TARGET_LENGTH: Final = 20


def bvalue_text(value: BValue) -> str:
    """Node's ``v.toString()`` of a bencode-decoded value (grape ``get``, section 5).

    Strings arrive as Buffers (UTF-8, invalid bytes become U+FFFD), integers as
    numbers, lists as arrays (``Array.prototype.toString`` joins with commas) and
    dicts as objects (``"[object Object]"``). Iterative: a hostile answer may nest
    thousands of lists.
    """
    parts: list[str] = []
    stack: list[BValue | None] = [value]  # None: a comma between list items
    while stack:
        item = stack.pop()
        if item is None:
            parts.append(",")
        elif isinstance(item, bytes):
            parts.append(item.decode("utf-8", "replace"))
        elif isinstance(item, int):
            try:
                parts.append(number_to_string(float(item)))
            except OverflowError:  # JS: Infinity (bencode integers of 309+ digits)
                parts.append("Infinity" if item > 0 else "-Infinity")
        elif isinstance(item, list):
            for i, member in enumerate(reversed(item)):
                if i:
                    stack.append(None)
                stack.append(member)
        else:
            parts.append("[object Object]")
    return "".join(parts)


def _record_host(bind: str | None) -> str | None:
    """The host of this node's own records: ``-b`` as bittorrent-dht ``encodePeer``
    stores it (``localhost`` becomes ``0.0.0.0``, section 4), or None without ``-b``."""
    if bind is None:
        return None
    return decode_peer(encode_peer(bind, 0)).rsplit(":", 1)[0]


@dataclass(frozen=True)
class DhtState:
    """What the log reports about the DHT (one line when it changes).

    Attributes:
        ready: the initial bootstrap has finished.
        nodes: contacts in the routing table (0: a lone grape).
        dead_bootstrap: bootstrap addresses that do not answer.
    """

    ready: bool
    nodes: int
    dead_bootstrap: frozenset[Address]


def _show(addresses: Sequence[Address]) -> str:
    return ",".join(f"{host}:{port}" for host, port in sorted(addresses))


class NetworkDht:
    """A grape's DHT on the network: one KRPC node answering the HTTP operations.

    Typical use (``serve`` does this)::

        dht = NetworkDht(bind="127.0.0.1", bootstrap=[("127.0.0.1", 20002)])
        async with trio.open_nursery() as nursery:
            await nursery.start(dht.run)
            outcome = await dht.execute(Lookup(b"rest:net:util"), trio.current_time())

    Args:
        bind: ``-b``: the host of this node's own announce records, or None to
            store none (section 4).
        bootstrap: ``--bn`` addresses (already resolved to IPv4).
        announce_max_age_ms: ``--dpa``: peer records expire on the node that
            stores them this long after their last announce; None never.
        host: the UDP bind address (a real grape binds all interfaces).
        port: the UDP port (0 picks one).
        transport: a bound datagram transport to serve on instead (``serve``
            binds the socket itself; tests pass an in-memory network).
        node_id: the 20-byte DHT id (random by default).
        query_timeout: seconds to wait for a KRPC answer (k-rpc-socket: 2 s).
        bootstrap_retry: seconds between background re-tries of dead bootstrap
            nodes.
        state_check_interval: seconds between background checks of the state
            for the log.
        rng: randomness (jitter, choosing 100 of many peers).
    """

    def __init__(self, *, bind: str | None, bootstrap: Sequence[Address] = (),
                 announce_max_age_ms: int | None = None, host: str = "0.0.0.0",
                 port: int = 0, transport: DatagramTransport | None = None,
                 node_id: bytes | None = None, query_timeout: float = QUERY_TIMEOUT,
                 bootstrap_retry: float = BOOTSTRAP_RETRY,
                 state_check_interval: float = STATE_CHECK_INTERVAL,
                 rng: random.Random | None = None) -> None:
        max_age = announce_max_age_ms / 1000 if announce_max_age_ms else None
        self.node = KrpcNode(node_id=node_id, store=KrpcStore(peer_max_age=max_age),
                             query_timeout=query_timeout, rate=PEER_RATE, burst=PEER_BURST,
                             global_rate=GLOBAL_RATE)
        self.krpc = KrpcDht(host=host, port=port, bootstrap=bootstrap,
                            record_host=_record_host(bind), node=self.node,
                            transport=transport, bootstrap_retry=bootstrap_retry, rng=rng)
        self.bind = bind
        self.node_id_hex = self.node.id.hex()
        self.state_check_interval = state_check_interval
        # Texts of the values this node put through HTTP (see the module docstring).
        self._texts = ValueStore()
        # Values no KRPC message can carry unchanged (see `_put_immutable`).
        self._local_only = ValueStore()
        self._dht_port = 0
        self._state: DhtState | None = None

    @property
    def dht_port(self) -> int:
        """The bound UDP port (0 before :meth:`run` started)."""
        return self._dht_port

    @property
    def bootstrap(self) -> list[Address]:
        """The ``--bn`` addresses."""
        return list(self.krpc.bootstrap_nodes)

    async def run(self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve the KRPC node and join the network, until cancelled.

        ``started()`` gets the bound UDP address as soon as the socket serves;
        the bootstrap goes on in the background (a real grape also answers HTTP
        before its DHT is ready), and operations issued meanwhile traverse
        through the bootstrap nodes themselves.
        """
        async with trio.open_nursery() as nursery:
            address = await nursery.start(self.krpc.run)
            self._dht_port = address[1]
            if self.krpc.bootstrap_nodes:
                log.info("localgrape: DHT joining via %s", _show(self.krpc.bootstrap_nodes))
            else:
                log.info("localgrape: DHT has no bootstrap nodes; a lone grape until a "
                         "node bootstraps to this one")
            nursery.start_soon(self._watch_state)
            task_status.started(address)

    async def wait_ready(self) -> None:
        """Wait until the initial bootstrap finished (2 s with dead bootstrap nodes)."""
        await self.krpc.wait_ready()

    # ------------------------------------------------------------------ the log

    def state(self) -> DhtState:
        """The DHT's current state, as the log reports it."""
        return DhtState(ready=self.krpc.ready, nodes=len(self.node.routing),
                        dead_bootstrap=frozenset(self.krpc.dead_bootstrap_nodes()))

    def check_state(self) -> DhtState:
        """Log what changed since the last check (one line per change)."""
        new = self.state()
        old = self._state
        self._state = new
        if not new.ready:
            return new
        if old is None or not old.ready:
            if new.nodes:
                log.info("localgrape: DHT joined: %d node(s) in the routing table", new.nodes)
            elif self.krpc.bootstrap_nodes:
                log.warning("localgrape: DHT: no bootstrap node answered; answering as a "
                            "lone grape (\"No nodes to query\") until one does")
        elif not old.nodes and new.nodes:
            log.info("localgrape: DHT joined: %d node(s) in the routing table", new.nodes)
        elif old.nodes and not new.nodes:
            log.warning("localgrape: DHT alone: no node left in the routing table")
        previous = old.dead_bootstrap if old is not None else frozenset()
        if new.dead_bootstrap - previous:
            log.warning("localgrape: DHT bootstrap node %s not answering; re-trying every "
                        "%g s", _show(list(new.dead_bootstrap - previous)),
                        self.krpc.bootstrap_retry)
        if previous - new.dead_bootstrap:
            log.info("localgrape: DHT bootstrap node %s answers again",
                     _show(list(previous - new.dead_bootstrap)))
        return new

    async def _watch_state(self) -> None:
        await self.krpc.wait_ready()
        while True:
            self.check_state()
            await trio.sleep(self.state_check_interval)

    # ------------------------------------------------------------------ operations

    async def execute(self, op: Op, now: float) -> Outcome:
        """Run ``op`` on the network (the Dht protocol); ``now`` is not needed here.

        Raises:
            RuntimeError: :meth:`run` is not running.
        """
        try:
            return await self._execute(op)
        finally:
            # A lookup changes no state worth a log line, and it is the hot path
            # (nodes look peers up every few seconds); _watch_state polls anyway.
            if self._state is not None and not isinstance(op, Lookup):
                self.check_state()

    async def _execute(self, op: Op) -> Outcome:
        if isinstance(op, Lookup):
            return await self.krpc.lookup(op.key)
        if isinstance(op, Announce):
            return _count(await self.krpc.announce(op.key, op.port))
        if isinstance(op, PutImmutable):
            return await self._put_immutable(op)
        if isinstance(op, PutMutable):
            return await self._put_mutable(op)
        return await self._get(op)

    async def _put_immutable(self, op: PutImmutable) -> Outcome:
        v = _decode_canonical(op.encoded_v)
        if v is None:
            # A value bencode2 cannot carry byte for byte (a number the JS bencoder
            # writes as `i1e+300e`, dict keys sorted by UTF-16): keep it here only.
            self._local_only.set(op.target, op.value)
            return DhtFailure(ALL_QUERIES_FAILED if len(self.node.routing)
                              else NO_NODES_TO_QUERY)
        self._texts.set(op.target, op.value)
        return _count(await self.krpc.put(v))

    async def _put_mutable(self, op: PutMutable) -> Outcome:
        v = _decode_canonical(op.encoded_v)
        if v is None:
            return DhtFailure(ALL_QUERIES_FAILED if len(self.node.routing)
                              else NO_NODES_TO_QUERY)
        outcome = await self.krpc.put_mutable(v, k=op.k, sig=op.sig, seq=op.seq,
                                              salt=op.salt or None, cas=op.cas)
        if isinstance(outcome, KrpcRemoteError):
            # Grape: `rep.statusCode = err.code` for BEP 44 301/302 (section 5).
            return DhtFailure(str(outcome), status=outcome.code)
        return _count(outcome)

    async def _get(self, op: Get) -> Outcome:
        if op.use_cache:
            item = self.node.store.get_item(op.target)
            if item is not None:
                own = self._texts.get(op.target) if item.id == self.node.id else None
                text = own if own is not None else StoredValue(bvalue_text(item.v))
                return GetHit(self.node_id_hex, None, text)
            own = self._local_only.get(op.target)
            if own is not None:
                return GetHit(self.node_id_hex, None, own)
        if len(op.target) != _TARGET_LENGTH:
            # No node can hold a value under a key that is not a SHA-1 (`"zzzz"`
            # hex-decodes to nothing); a real grape still asks, and misses.
            return None
        found = await self.krpc.get(op.target, cache=False)
        if found is None:
            return None
        token = found.token.hex() if found.token is not None else None
        return GetHit(found.id.hex(), token, StoredValue(bvalue_text(found.v)))


def _count(outcome: int | str) -> int | DhtFailure:
    return DhtFailure(outcome) if isinstance(outcome, str) else outcome


def _decode_canonical(encoded: bytes) -> BValue | None:
    """``encoded`` as a bencode2 value, or None if it cannot be sent unchanged."""
    try:
        value: BValue = bencode2.bdecode(encoded)
    except Exception:  # bencode2 raises its own error types for non-canonical input
        return None
    if bencode2.bencode(value) != encoded:
        return None
    return value
