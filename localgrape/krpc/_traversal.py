"""The iterative closest-nodes lookup of k-rpc ``_closest``: a sans-IO core and a trio driver.

:class:`Traversal` is pure (no I/O, no clock): it says which addresses to
query next and digests the answers. :func:`run_traversal` drives it with a
:class:`~localgrape.krpc.KrpcNode`. The algorithm is k-rpc 5.1.0
``RPC.prototype._closest`` as bittorrent-dht 10.0.0 ``_closest`` uses it:

* a temporary table per target (k-rpc: ``new KBucket({localNodeId: target})``)
  holding every node that answered or was named in an answer's ``nodes``;
* each "kick" queries the not yet queried of the ``k`` closest nodes in that
  table, at most ``concurrency`` at a time (k-rpc ``MAX_CONCURRENCY`` 16: Grape
  reads ``dht_concurrency`` but never passes it to bittorrent-dht);
* when that table is smaller than the bootstrap list, the routing table is
  used instead, and when that is small too, the bootstrap addresses are queried
  (once per traversal, k-rpc ``bootstrap()``);
* the traversal ends when nothing is in flight and nothing is left to query;
* a second table keeps each node that answered with a write ``token``
  (bittorrent-dht ``_closest``'s ``onreply``), so that ``announce_peer`` / ``put``
  can go to the ``k`` closest of them (bittorrent-dht ``announce``/``_put``:
  ``queryAll(table.closest(key))``).

Differences, on purpose: addresses the caller knows to be dead (``skip``) are
not queried, so a dead node costs one timeout and not one per traversal
(grape-http-api.md section 7); a traversal stopped by its visitor cancels the
queries still in flight instead of waiting for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from ._errors import KrpcRemoteError, KrpcTimeout
from ._messages import ID_LENGTH, NodeInfo, Query, Response
from ._node import KrpcNode
from ._routing import K, RoutingTable, distance_key

__all__ = [
    "CONCURRENCY",
    "TokenNode",
    "Traversal",
    "TraversalResult",
    "Visitor",
    "run_traversal",
]

Address = tuple[str, int]

CONCURRENCY: int = 16
"""k-rpc ``MAX_CONCURRENCY``: queries in flight per traversal."""
_TABLE_LIMIT = 512
"""Candidates kept per traversal; pruned to the closest ``_TABLE_KEEP`` beyond it
(k-bucket caps the temporary table by its bucket size in the same spirit)."""
_TABLE_KEEP = 256

Visitor = Callable[[Response, Address], bool | None]
"""Called with every answer; returning False stops the traversal (k-rpc ``visit``)."""


@dataclass(frozen=True)
class TokenNode:
    """A node that answered with a write token (for ``announce_peer`` / ``put``).

    Attributes:
        node: the node (its id from the answer, its address from the UDP source).
        token: the ``token`` it handed out; valid for our IP only.
    """

    node: NodeInfo
    token: bytes


@dataclass(frozen=True)
class TraversalResult:
    """What a finished traversal learnt.

    Attributes:
        responded: answers received (k-rpc's ``count``, the "visited" nodes).
        token_nodes: the ``k`` closest nodes that returned a token, closest first.
        responders: addresses that answered (with a response or a KRPC error).
        timed_out: addresses that did not answer in time.
        stopped: the visitor ended the traversal early.
    """

    responded: int
    token_nodes: tuple[TokenNode, ...]
    responders: frozenset[Address]
    timed_out: frozenset[Address]
    stopped: bool


@dataclass
class Traversal:
    """The state of one iterative lookup towards ``target``; pure.

    Args:
        target: the key (a 20-byte id, or a raw grape service name of any length).
        routing: this node's routing table (read, never written).
        bootstrap: addresses to fall back to when the tables are too small.
        k: how many closest nodes to converge on (k-rpc ``K`` = 20).
        skip: addresses not to query (known dead); they count as already queried.
        local_addresses: our own addresses, never queried.
    """

    target: bytes
    routing: RoutingTable
    bootstrap: Sequence[Address] = ()
    k: int = K
    skip: Callable[[Address], bool] = field(default=lambda address: False)
    local_addresses: frozenset[Address] = frozenset()
    pending: int = field(default=0, init=False)
    stopped: bool = field(default=False, init=False)
    _table: dict[bytes, NodeInfo] = field(default_factory=dict, init=False)
    _tokens: dict[bytes, TokenNode] = field(default_factory=dict, init=False)
    _queried: set[Address] = field(default_factory=set, init=False)
    _bootstrapped: bool = field(default=False, init=False)
    _responded: int = field(default=0, init=False)
    _responders: set[Address] = field(default_factory=set, init=False)
    _timed_out: set[Address] = field(default_factory=set, init=False)

    @property
    def local_id(self) -> bytes:
        """Our node id (answers and nodes carrying it are ignored)."""
        return self.routing.local_id

    @property
    def done(self) -> bool:
        """Nothing in flight and nothing left to ask (call after :meth:`next_queries`)."""
        return self.pending == 0

    def _closest(self, n: int) -> list[NodeInfo]:
        """The ``n`` closest nodes of the temporary table (k-bucket ``closest``)."""
        values = sorted(self._table.values(),
                        key=lambda x: (distance_key(x.id, self.target), x.id))
        return values[:n]

    def _take(self, address: Address) -> bool:
        """Mark ``address`` queried; False if it must not be queried now."""
        if address in self._queried:
            return False
        self._queried.add(address)
        return address not in self.local_addresses and not self.skip(address)

    def next_queries(self, capacity: int) -> list[Address]:
        """k-rpc ``kick``: the addresses to query now, at most ``capacity`` beyond those
        in flight (bootstrap addresses are all sent at once, as k-rpc does).

        The caller must report each one through :meth:`on_response` or
        :meth:`on_failure`.
        """
        if self.stopped:
            return []
        out: list[Address] = []
        closest = self._closest(self.k)
        need = max(1, len(self.bootstrap))
        if len(closest) < need:
            closest = self.routing.closest(self.target, self.k)
            if len(closest) < need and not self._bootstrapped:
                # k-rpc `bootstrap()`: once per traversal, every bootstrap address.
                self._bootstrapped = True
                out.extend(a for a in dict.fromkeys(self.bootstrap) if self._take(a))
        for node in closest:
            if self.pending + len(out) >= capacity:
                break
            if node.id == self.local_id or not self._take(node.address):
                continue
            out.append(node.address)
        self.pending += len(out)
        return out

    def _add(self, node: NodeInfo) -> None:
        # k-rpc `add`: `if (node.id.equals(self.id)) return`.
        if len(node.id) != ID_LENGTH or node.id == self.local_id or node.port == 0:
            return
        self._table[node.id] = node
        if len(self._table) > _TABLE_LIMIT:
            self._table = {n.id: n for n in self._closest(_TABLE_KEEP)}

    def on_response(self, address: Address, response: Response) -> None:
        """k-rpc ``afterQuery`` for an answer: learn the node and the nodes it names."""
        self.pending -= 1
        self._responded += 1
        self._responders.add(address)
        node = NodeInfo(response.id, *address)
        self._add(node)
        for named in response.nodes or ():
            self._add(named)
        # bittorrent-dht `_closest` `onreply`: keep nodes that handed out a token.
        if response.token is not None and response.id != self.local_id:
            self._tokens[response.id] = TokenNode(node, response.token)

    def on_failure(self, address: Address, *, timed_out: bool) -> None:
        """k-rpc ``afterQuery`` for an error (``timed_out`` False) or a timeout."""
        self.pending -= 1
        if timed_out:
            self._timed_out.add(address)
        else:
            self._responders.add(address)

    def stop(self) -> None:
        """The visitor is satisfied: send no more queries (k-rpc ``stop = true``)."""
        self.stopped = True

    def result(self) -> TraversalResult:
        """The outcome so far."""
        tokens = sorted(self._tokens.values(),
                        key=lambda t: (distance_key(t.node.id, self.target), t.node.id))
        return TraversalResult(
            responded=self._responded, token_nodes=tuple(tokens[:self.k]),
            responders=frozenset(self._responders), timed_out=frozenset(self._timed_out),
            stopped=self.stopped)


async def run_traversal(node: KrpcNode, traversal: Traversal, query: Query, *,
                        visit: Visitor | None = None,
                        concurrency: int = CONCURRENCY) -> TraversalResult:
    """Run ``traversal`` with ``node``, sending ``query`` to every node asked.

    Each query waits at most ``node.query_timeout`` (2 s, k-rpc-socket), so a
    traversal through dead nodes costs one timeout per round, never more.

    Args:
        node: a serving KRPC node.
        traversal: a fresh :class:`Traversal`.
        query: the query to send (``find_node``, ``get_peers`` or ``get``).
        visit: called with each answer; returning False stops the traversal
            and cancels the queries still in flight.
        concurrency: queries in flight at once.

    Returns:
        The :class:`TraversalResult`.
    """
    send, receive = trio.open_memory_channel[tuple[Address, Response | None, bool]](math.inf)

    async def ask(address: Address) -> None:
        try:
            response = await node.query(address, query)
        except KrpcTimeout:
            # KrpcNode.query already charged the contact a failure, which evicts
            # it (k-rpc `_closest`: `if (err.code === 'ETIMEDOUT') self.nodes.remove`).
            send.send_nowait((address, None, True))
        except KrpcRemoteError:
            send.send_nowait((address, None, False))
        else:
            send.send_nowait((address, response, False))

    async with trio.open_nursery() as nursery:
        for address in traversal.next_queries(concurrency):
            nursery.start_soon(ask, address)
        while not traversal.done:
            address, response, timed_out = await receive.receive()
            if response is None:
                traversal.on_failure(address, timed_out=timed_out)
            else:
                traversal.on_response(address, response)
                if visit is not None and visit(response, address) is False:
                    traversal.stop()
            if traversal.stopped:
                nursery.cancel_scope.cancel()
                break
            for next_address in traversal.next_queries(concurrency):
                nursery.start_soon(ask, next_address)
    return traversal.result()
