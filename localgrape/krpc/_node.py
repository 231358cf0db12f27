"""A KRPC node on a trio UDP socket: answers BEP 5 / BEP 44 queries, sends its own.

The protocol work is synchronous (:meth:`KrpcNode.handle_datagram` takes bytes,
an address and the time, and returns the datagrams to send); the trio part only
moves datagrams. Behaviour follows bittorrent-dht 10.0.0 ``client.js``
``_onquery`` and friends; timings follow k-rpc-socket (2 s query timeout).
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import bencode2
import trio

from ._errors import (
    INVALID_SIGNATURE,
    MESSAGE_TOO_BIG,
    PROTOCOL_ERROR,
    SALT_TOO_BIG,
    VERIFICATION_NOT_SUPPORTED,
    DropReason,
    KrpcError,
    KrpcRemoteError,
    KrpcTimeout,
)
from ._messages import (
    ID_LENGTH,
    MAX_PACKET_SIZE,
    MAX_SALT_SIZE,
    MAX_VALUE_SIZE,
    PUBLIC_KEY_LENGTH,
    SIGNATURE_LENGTH,
    AnnouncePeer,
    BValue,
    ErrorMessage,
    FindNode,
    GetItem,
    GetPeers,
    NodeInfo,
    PeerInfo,
    Ping,
    PutItem,
    Query,
    QueryMessage,
    Response,
    ResponseMessage,
    decode,
    encode,
    signature_data,
)
from ._ratelimit import RateLimiter
from ._routing import AddStatus, RoutingTable
from ._store import KrpcStore, PutRejected, StoredItem
from ._tokens import TokenManager

__all__ = [
    "QUERY_TIMEOUT",
    "DatagramTransport",
    "KrpcNode",
    "KrpcNodeStatistics",
    "Verifier",
    "open_udp_transport",
]

Address = tuple[str, int]
Verifier = Callable[[bytes, bytes, bytes], bool]
"""``verify(sig, message, public_key) -> bool``, bittorrent-dht's ``verify`` option."""

QUERY_TIMEOUT: float = 2.0
"""k-rpc-socket ``opts.timeout || 2000`` ms."""
MAX_INFLIGHT: int = 64
MAX_BACKGROUND_PINGS: int = 8
MAX_VERIFY_PINGS: int = 16
"""Unknown querying nodes being pinged at once before they enter the table."""
MAX_VALUES: int = 100
"""Peers returned per ``get_peers`` answer. bittorrent-dht returns *all*; we cap
at grape's own lookup limit (``_mem.get(ih, 100)``) to keep answers < 1 KB."""


class DatagramTransport(Protocol):
    """The datagram I/O a :class:`KrpcNode` needs (a UDP socket, or a test fake)."""

    @property
    def local_address(self) -> Address:
        """The bound ``(host, port)``."""
        ...

    async def send(self, data: bytes, address: Address) -> None:
        """Send one datagram (may raise OSError)."""
        ...

    async def receive(self, max_size: int) -> tuple[bytes, Address]:
        """Receive one datagram of at most ``max_size`` bytes (may raise OSError)."""
        ...

    def close(self) -> None:
        """Release the socket."""
        ...


class _UdpTransport:
    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self._address = (str(host), int(port))

    @property
    def local_address(self) -> Address:
        return self._address

    async def send(self, data: bytes, address: Address) -> None:
        await self._sock.sendto(data, address)

    async def receive(self, max_size: int) -> tuple[bytes, Address]:
        data, addr = await self._sock.recvfrom(max_size)
        return data, (str(addr[0]), int(addr[1]))

    def close(self) -> None:
        self._sock.close()


async def open_udp_transport(host: str = "127.0.0.1", port: int = 0, *,
                             receive_buffer: int | None = None) -> DatagramTransport:
    """Bind an IPv4 UDP socket on ``host``/``port`` (0 picks a free port).

    Args:
        host: the address to bind.
        port: the port (0 picks a free one).
        receive_buffer: ``SO_RCVBUF`` to ask for (the kernel may cap it), so that
            a burst of datagrams from one flooding address does not overflow the
            socket and crowd out the answers our own queries wait for.
    """
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    try:
        if receive_buffer is not None:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, receive_buffer)
        await sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return _UdpTransport(sock)


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class KrpcNodeStatistics:
    """A snapshot of a node's counters (trio-style ``statistics()``).

    Attributes:
        packets_received: every datagram read from the socket.
        packets_sent: datagrams written.
        queries_received: well-formed queries processed.
        responses_received: responses matched to one of our queries.
        errors_received: KRPC errors matched to one of our queries.
        queries_sent: queries we sent.
        queries_timed_out: our queries that got no answer in time.
        dropped: counts per :class:`DropReason` value.
        send_failures: OSErrors from the socket.
        routing_table_size: contacts in the routing table.
        peers_stored: peer records in the store.
        items_stored: BEP 44 items in the store.
        in_flight: our queries awaiting an answer.
    """

    packets_received: int
    packets_sent: int
    queries_received: int
    responses_received: int
    errors_received: int
    queries_sent: int
    queries_timed_out: int
    dropped: Mapping[str, int]
    send_failures: int
    routing_table_size: int
    peers_stored: int
    items_stored: int
    in_flight: int

    @property
    def dropped_total(self) -> int:
        """All dropped datagrams."""
        return sum(self.dropped.values())


@dataclass
class _Pending:
    address: Address
    expected_id: bytes | None
    done: trio.Event = field(default_factory=trio.Event)
    result: Response | KrpcRemoteError | None = None


class KrpcNode:
    """A DHT node speaking KRPC over UDP.

    Typical use::

        node = KrpcNode()
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(node.serve, "127.0.0.1", 0)
            pong = await node.ping(("127.0.0.1", 20001))

    Args:
        node_id: 20-byte id (random by default, like k-rpc).
        store: the peer / item store (shared with an HTTP layer, if any).
        verify: ed25519 verifier for mutable puts. Without one, mutable puts are
            refused with ``[400, 'verification not supported']``, exactly like a
            CLI grape (grape-http-api.md section 5).
        query_timeout: seconds to wait for an answer (k-rpc-socket: 2 s).
        rate: sustained datagrams per second accepted from one ``(host, port)``.
        burst: burst allowance per ``(host, port)``.
        global_rate: sustained datagrams per second accepted in total.
        max_packet_size: longer datagrams are dropped unparsed.
        client_version: the ``v`` field to send (grape sends none).
        random_bytes: entropy source for ids and token secrets.
    """

    def __init__(self, *, node_id: bytes | None = None, store: KrpcStore | None = None,
                 verify: Verifier | None = None, query_timeout: float = QUERY_TIMEOUT,
                 rate: float = 100.0, burst: float = 200.0, global_rate: float = 5000.0,
                 max_packet_size: int = MAX_PACKET_SIZE, client_version: bytes | None = None,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.id = node_id if node_id is not None else random_bytes(ID_LENGTH)
        if len(self.id) != ID_LENGTH:
            raise ValueError("node_id must be 20 bytes")
        self.store = store if store is not None else KrpcStore()
        self.routing = RoutingTable(self.id)
        self.verify = verify
        self.query_timeout = query_timeout
        self.max_packet_size = max_packet_size
        self.client_version = client_version
        self._random_bytes = random_bytes
        self._tokens: TokenManager | None = None
        self._per_address = RateLimiter(rate, burst)
        self._global = RateLimiter(global_rate, global_rate)
        self._transport: DatagramTransport | None = None
        self._nursery: trio.Nursery | None = None
        self._pending: dict[bytes, _Pending] = {}
        self._next_tid = 0
        self._inflight = trio.CapacityLimiter(MAX_INFLIGHT)
        self._pinging: set[bytes] = set()
        self._verifying: set[Address] = set()
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()

    # ------------------------------------------------------------------ lifecycle

    @property
    def address(self) -> Address:
        """The bound ``(host, port)``.

        Raises:
            RuntimeError: the node is not serving.
        """
        if self._transport is None:
            raise RuntimeError("node is not serving")
        return self._transport.local_address

    async def serve(self, host: str = "127.0.0.1", port: int = 0, *,
                    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind a UDP socket and serve until cancelled; ``started()`` gets the address."""
        transport = await open_udp_transport(host, port)
        await self.serve_transport(transport, task_status=task_status)

    async def serve_transport(
            self, transport: DatagramTransport, *,
            task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on ``transport`` until cancelled; closes it on exit."""
        if self._transport is not None:
            raise RuntimeError("node is already serving")
        try:
            async with trio.open_nursery() as nursery:
                self._transport = transport
                self._nursery = nursery
                task_status.started(transport.local_address)
                await self._receive_loop(transport)
        finally:
            self._transport = None
            self._nursery = None
            transport.close()
            for pending in self._pending.values():
                pending.done.set()
            self._pending.clear()

    async def _receive_loop(self, transport: DatagramTransport) -> None:
        while True:
            try:
                data, source = await transport.receive(self.max_packet_size + 1)
            except OSError:
                self._counts["send_failures"] += 1
                continue
            for out, destination in self.handle_datagram(data, source, trio.current_time()):
                await self._send(out, destination)

    async def _send(self, data: bytes, destination: Address) -> None:
        assert self._transport is not None
        try:
            await self._transport.send(data, destination)
        except OSError:
            self._counts["send_failures"] += 1
        else:
            self._counts["packets_sent"] += 1

    def statistics(self) -> KrpcNodeStatistics:
        """Counters since creation."""
        c = self._counts
        return KrpcNodeStatistics(
            packets_received=c["packets_received"], packets_sent=c["packets_sent"],
            queries_received=c["queries_received"], responses_received=c["responses_received"],
            errors_received=c["errors_received"], queries_sent=c["queries_sent"],
            queries_timed_out=c["queries_timed_out"], dropped=dict(self._dropped),
            send_failures=c["send_failures"], routing_table_size=len(self.routing),
            peers_stored=self.store.peer_count(), items_stored=self.store.item_count(),
            in_flight=len(self._pending))

    # ------------------------------------------------------------------ incoming

    def handle_datagram(self, data: bytes, source: Address,
                        now: float) -> list[tuple[bytes, Address]]:
        """Process one datagram synchronously.

        Never raises for any ``data``: malformed or unwanted input is counted
        in :meth:`statistics` and dropped.

        Returns:
            Datagrams to send, as ``(bytes, address)``.
        """
        self._counts["packets_received"] += 1
        host, port = source
        # k-rpc-socket `onmessage`: `if (!rinfo.port) return`.
        if not 0 < port <= 0xFFFF or not _is_ipv4(host):
            return self._drop(DropReason.BAD_SOURCE)
        if not self._global.allow(None, now) or not self._per_address.allow(source, now):
            return self._drop(DropReason.RATE_LIMITED)
        try:
            message = decode(data, max_size=self.max_packet_size)
        except KrpcError as exc:
            self._dropped[exc.reason.value] += 1
            if exc.reply is not None and exc.transaction_id is not None:
                return [self._error(exc.transaction_id, *exc.reply, source)]
            return []
        if isinstance(message, QueryMessage):
            return self._on_query(message, source, now)
        self._on_answer(message, source, now)
        return []

    def _drop(self, reason: DropReason) -> list[tuple[bytes, Address]]:
        self._dropped[reason.value] += 1
        return []

    def _error(self, t: bytes, code: int, text: str, dest: Address) -> tuple[bytes, Address]:
        return encode(ErrorMessage(t, code, text, self.client_version)), dest

    def _reply(self, t: bytes, response: Response, dest: Address) -> tuple[bytes, Address]:
        return encode(ResponseMessage(t, response, self.client_version)), dest

    def _learn(self, node_id: bytes, source: Address, now: float) -> None:
        """k-rpc `addNode`: every valid query or response teaches us its sender."""
        result = self.routing.add(NodeInfo(node_id, *source), now)
        if result.status is AddStatus.FULL and result.ping is not None:
            self._check_oldest(result.ping)

    def _on_query(self, message: QueryMessage, source: Address,
                  now: float) -> list[tuple[bytes, Address]]:
        self._counts["queries_received"] += 1
        query, t = message.query, message.transaction_id
        if not message.read_only:  # BEP 43: read-only nodes stay out of tables
            self._learn_sender(query.id, source, now)
        host = source[0]
        if isinstance(query, Ping):
            return [self._reply(t, Response(self.id), source)]
        if isinstance(query, FindNode):
            # bittorrent-dht `_onfindnode`: `nodes.closest(target)` (k of them).
            return [self._reply(t, Response(self.id, nodes=tuple(
                self.routing.closest(query.target))), source)]
        if self._tokens is None:  # created lazily: the first `now` starts rotation
            self._tokens = TokenManager(now, random_bytes=self._random_bytes)
        tokens = self._tokens
        if isinstance(query, GetPeers):
            token = tokens.generate(host, now)
            peers = self.store.peers(query.info_hash, now, MAX_VALUES)
            if peers:  # `_ongetpeers`: values when known, else closest nodes
                return [self._reply(t, Response(self.id, token=token, values=tuple(peers)),
                                    source)]
            return [self._reply(t, Response(self.id, token=token, nodes=tuple(
                self.routing.closest(query.info_hash))), source)]
        if isinstance(query, AnnouncePeer):
            if not tokens.validate(host, query.token, now):
                self._dropped[DropReason.BAD_TOKEN.value] += 1
                return [self._error(t, PROTOCOL_ERROR,
                                    "cannot `announce_peer` with bad token", source)]
            # `_onannouncepeer`: implied_port means "use the UDP source port".
            port = source[1] if query.implied_port else query.port
            self.store.add_peer(query.info_hash, PeerInfo(host, port), now)
            return [self._reply(t, Response(self.id), source)]
        if isinstance(query, GetItem):
            return [self._on_get(t, query, tokens.generate(host, now), source)]
        return self._on_put(t, query, tokens, source, now)

    def _on_get(self, t: bytes, query: GetItem, token: bytes,
                source: Address) -> tuple[bytes, Address]:
        item = self.store.get_item(query.target)
        if item is None:
            return self._reply(t, Response(self.id, token=token, nodes=tuple(
                self.routing.closest(query.target))), source)
        if query.seq is not None and item.seq is not None and item.seq <= query.seq:
            # BEP 44: the requester already has this seq; do not resend v.
            return self._reply(t, Response(self.id, token=token, seq=item.seq), source)
        # bittorrent-dht `createGetResponse`: id, token, v (+ sig, k, seq).
        return self._reply(t, Response(self.id, token=token, v=item.v, k=item.k, sig=item.sig,
                                       seq=item.seq), source)

    def _on_put(self, t: bytes, query: PutItem, tokens: TokenManager, source: Address,
                now: float) -> list[tuple[bytes, Address]]:
        # Check order of bittorrent-dht `_onput`: token, size, mutability.
        if not tokens.validate(source[0], query.token, now):
            self._dropped[DropReason.BAD_TOKEN.value] += 1
            return [self._error(t, PROTOCOL_ERROR, "cannot `put` with bad token", source)]
        size = len(query.v) if isinstance(query.v, bytes) else len(bencode2.bencode(query.v))
        if size > MAX_VALUE_SIZE:
            self._dropped[DropReason.REJECTED.value] += 1
            return [self._error(t, MESSAGE_TOO_BIG, "data payload too large", source)]
        if not query.is_mutable:
            self.store.put_immutable(query.v, query.id)
            return [self._reply(t, Response(self.id), source)]
        if self.verify is None:
            self._dropped[DropReason.REJECTED.value] += 1
            return [self._error(t, VERIFICATION_NOT_SUPPORTED, "verification not supported",
                                source)]
        if query.salt is not None and len(query.salt) > MAX_SALT_SIZE:
            self._dropped[DropReason.REJECTED.value] += 1
            return [self._error(t, SALT_TOO_BIG, "salt too big", source)]
        if (query.k is None or len(query.k) != PUBLIC_KEY_LENGTH or query.sig is None
                or len(query.sig) != SIGNATURE_LENGTH or query.seq is None
                or not self.verify(query.sig, signature_data(query.v, query.seq, query.salt),
                                   query.k)):
            # bittorrent-dht drops silently here; BEP 44 asks for error 206.
            self._dropped[DropReason.REJECTED.value] += 1
            return [self._error(t, INVALID_SIGNATURE, "invalid signature", source)]
        try:
            self.store.put_mutable(StoredItem(query.v, query.id, query.k, query.sig, query.seq,
                                              query.salt or None), cas=query.cas)
        except PutRejected as exc:
            self._dropped[DropReason.REJECTED.value] += 1
            return [self._error(t, exc.code, exc.message, source)]
        return [self._reply(t, Response(self.id), source)]

    def _on_answer(self, message: ResponseMessage | ErrorMessage, source: Address,
                   now: float) -> None:
        pending = self._pending.get(message.transaction_id)
        if pending is None or pending.address != source or pending.done.is_set():
            # k-rpc-socket: "Unexpected transaction id" / "Out of order response".
            self._dropped[DropReason.UNEXPECTED_RESPONSE.value] += 1
            return
        if isinstance(message, ErrorMessage):
            self._counts["errors_received"] += 1
            pending.result = KrpcRemoteError(message.code, message.message)
        else:
            response = message.response
            if pending.expected_id is not None and response.id != pending.expected_id:
                # k-rpc-socket EUNEXPECTEDNODE: the address now hosts another node.
                self._dropped[DropReason.UNEXPECTED_RESPONSE.value] += 1
                pending.result = KrpcRemoteError(0, "Unexpected node id")
                self.routing.remove(pending.expected_id)
            else:
                self._counts["responses_received"] += 1
                pending.result = response
                self._learn(response.id, source, now)
        pending.done.set()

    def _learn_sender(self, node_id: bytes, source: Address, now: float) -> None:
        """k-rpc adds every querying node to its table at once. We do that for a
        node we know; an unknown one is pinged first and added when it answers
        (the answer goes through ``_learn``), so that a sender that never answers
        (a flood, a spoofed source) cannot cost our traversals a 2 s timeout."""
        if self._nursery is None or node_id in self.routing:
            self._learn(node_id, source, now)
            return
        if source in self._verifying or len(self._verifying) >= MAX_VERIFY_PINGS:
            return
        self._verifying.add(source)
        self._nursery.start_soon(self._verify_sender, NodeInfo(node_id, *source))

    async def _verify_sender(self, sender: NodeInfo) -> None:
        try:
            await self.query(sender.address, Ping(self.id), expected_id=sender.id)
        except (KrpcTimeout, KrpcRemoteError):
            pass
        finally:
            self._verifying.discard(sender.address)

    def _check_oldest(self, oldest: NodeInfo) -> None:
        """Ping the least recently seen contact of a full bucket (Kademlia)."""
        if (self._nursery is None or oldest.id in self._pinging
                or len(self._pinging) >= MAX_BACKGROUND_PINGS):
            return
        self._pinging.add(oldest.id)
        self._nursery.start_soon(self._ping_oldest, oldest)

    async def _ping_oldest(self, oldest: NodeInfo) -> None:
        try:
            await self.query(oldest.address, Ping(self.id), expected_id=oldest.id)
        except (KrpcTimeout, KrpcRemoteError):
            pass  # `query` already recorded the failure and evicted it
        finally:
            self._pinging.discard(oldest.id)

    # ------------------------------------------------------------------ outgoing

    def _new_transaction_id(self) -> bytes:
        # k-rpc-socket: a 2-byte big-endian counter, 0 never used.
        for _ in range(0xFFFF):
            self._next_tid = self._next_tid % 0xFFFF + 1
            tid = self._next_tid.to_bytes(2, "big")
            if tid not in self._pending:
                return tid
        raise RuntimeError("no free transaction id")  # pragma: no cover (limiter: 64)

    async def query(self, address: Address, query: Query, *,
                    expected_id: bytes | None = None) -> Response:
        """Send ``query`` to ``address`` and wait for the answer.

        Args:
            address: the node's ``(host, port)``.
            query: the query; its ``id`` should be this node's id.
            expected_id: if known, the answer must come from this node id.

        Returns:
            The response.

        Raises:
            KrpcTimeout: no answer within ``query_timeout`` (the contact, if
                known, is charged a failure and may be evicted).
            KrpcRemoteError: the node answered with a KRPC error.
            RuntimeError: the node is not serving.
        """
        if self._transport is None:
            raise RuntimeError("node is not serving")
        async with self._inflight:
            tid = self._new_transaction_id()
            pending = _Pending(address, expected_id)
            self._pending[tid] = pending
            sent_at = trio.current_time()
            try:
                data = encode(QueryMessage(tid, query, self.client_version))
                self._counts["queries_sent"] += 1
                await self._send(data, address)
                with trio.move_on_after(self.query_timeout):
                    await pending.done.wait()
            finally:
                self._pending.pop(tid, None)
        result = pending.result
        if result is None:
            self._counts["queries_timed_out"] += 1
            node_id = expected_id or self._id_at(address)
            contact = self.routing.contact(node_id) if node_id is not None else None
            # Only charge a contact we have not heard from since the query left:
            # a node that came up at this address after we sent (a grape started
            # after the one bootstrapping to it) is alive, not dead.
            if node_id is not None and (contact is None or contact.last_seen <= sent_at):
                self.routing.record_failure(node_id, trio.current_time())
            raise KrpcTimeout(f"no answer from {address[0]}:{address[1]} "
                              f"to {query.method.decode()}")
        if isinstance(result, KrpcRemoteError):
            raise result
        return result

    def _id_at(self, address: Address) -> bytes | None:
        for node in self.routing:
            if node.address == address:
                return node.id
        return None

    async def ping(self, address: Address) -> NodeInfo:
        """``ping`` a node; returns its contact (id from the answer)."""
        response = await self.query(address, Ping(self.id))
        return NodeInfo(response.id, *address)

    async def find_node(self, address: Address, target: bytes) -> Response:
        """``find_node``; the answer's ``nodes`` are the closest the node knows."""
        return await self.query(address, FindNode(self.id, target))

    async def get_peers(self, address: Address, info_hash: bytes) -> Response:
        """``get_peers``; the answer has ``values`` or ``nodes``, and a ``token``."""
        return await self.query(address, GetPeers(self.id, info_hash))

    async def announce_peer(self, address: Address, info_hash: bytes, port: int, token: bytes,
                            *, implied_port: bool = False) -> Response:
        """``announce_peer`` with a token from a previous ``get_peers`` answer."""
        return await self.query(address, AnnouncePeer(self.id, info_hash, port, token,
                                                      implied_port))

    async def get(self, address: Address, target: bytes, *, seq: int | None = None) -> Response:
        """BEP 44 ``get``."""
        return await self.query(address, GetItem(self.id, target, seq))

    async def put(self, address: Address, token: bytes, v: BValue, *, k: bytes | None = None,
                  sig: bytes | None = None, seq: int | None = None, salt: bytes | None = None,
                  cas: int | None = None) -> Response:
        """BEP 44 ``put`` with a token from a previous ``get`` answer."""
        return await self.query(address, PutItem(self.id, token, v, k, sig, seq, salt, cas))

