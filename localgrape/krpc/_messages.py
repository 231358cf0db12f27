"""Sans-IO KRPC codec: bencoded dicts in, typed frozen messages out (and back).

Covers BEP 5 (``ping``, ``find_node``, ``get_peers``, ``announce_peer``) and
BEP 44 (``get``/``put`` of immutable and mutable items), with the extension
fields ``v`` (client version) and ``ip`` (BEP 42, the requester's address).

Compatibility notes, matched against the JS stack the real grape runs on
(grenache-grape 1.0.0, bittorrent-dht 10.0.0, k-rpc 5.1.0, k-rpc-socket 1.11.1):

* Grape does **not** hash service names: ``Grape.announce`` passes
  ``str2hex(name)`` and bittorrent-dht's ``toBuffer`` decodes it back, so the
  ``info_hash`` / ``target`` on the wire is the raw UTF-8 name, of any length
  (even empty). This codec therefore accepts keys of any length; only node ids
  must be 20 bytes.
* Error replies are ``e: [code, message]`` (k-rpc-socket ``RPC.prototype.error``).
* Compact node info is 26 bytes (BEP 5); entries with port 0 are skipped, as
  k-rpc ``parseNodes`` and bittorrent-dht ``decodePeers`` do.
* The JS encoder sorts dict keys and omits null values; bencode2 is strict
  (sorted, no duplicates, no trailing bytes), which every BEP-conforming sender
  satisfies.

Any malformed input raises :class:`~localgrape.krpc.KrpcError`; nothing else
escapes :func:`decode`.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias, cast

import bencode2

from ._errors import METHOD_UNKNOWN, PROTOCOL_ERROR, DropReason, KrpcError

__all__ = [
    "ID_LENGTH",
    "MAX_PACKET_SIZE",
    "MAX_VALUE_SIZE",
    "AnnouncePeer",
    "BValue",
    "ErrorMessage",
    "FindNode",
    "GetItem",
    "GetPeers",
    "Message",
    "NodeInfo",
    "PeerInfo",
    "Ping",
    "PutItem",
    "Query",
    "QueryMessage",
    "Response",
    "ResponseMessage",
    "decode",
    "decode_nodes",
    "decode_peer",
    "encode",
    "encode_nodes",
    "encode_peer",
    "immutable_target",
    "mutable_target",
    "signature_data",
]

BValue: TypeAlias = "int | bytes | list[BValue] | dict[bytes, BValue]"
"""A bencodable value as bencode2 decodes it (strings are bytes)."""

ID_LENGTH: Final = 20
"""Node ids are 160-bit (BEP 5; bittorrent-dht ``_hashLength`` of SHA-1)."""
COMPACT_NODE_LENGTH: Final = ID_LENGTH + 6
COMPACT_PEER_LENGTH: Final = 6
MAX_PACKET_SIZE: Final = 16384
"""Datagrams above this are dropped unparsed. Large enough for a ``get_peers``
answer listing 2000 peers (bittorrent-dht ``_ongetpeers`` sends *all* peers)."""
MAX_VALUE_SIZE: Final = 1000
"""BEP 44: ``v`` must be at most 1000 bytes (bittorrent-dht ``_onput``)."""
MAX_SALT_SIZE: Final = 64
"""BEP 44: ``salt`` must be at most 64 bytes."""
PUBLIC_KEY_LENGTH: Final = 32
SIGNATURE_LENGTH: Final = 64
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


# --------------------------------------------------------------------------- compact info


@dataclass(frozen=True, order=True)
class PeerInfo:
    """An IPv4 peer address; BEP 5 "compact IP-address/port info" (6 bytes)."""

    host: str
    port: int


@dataclass(frozen=True)
class NodeInfo:
    """A DHT node; BEP 5 "compact node info" (20-byte id + 6-byte address)."""

    id: bytes
    host: str
    port: int

    @property
    def address(self) -> tuple[str, int]:
        """The node's ``(host, port)``."""
        return (self.host, self.port)


def _pack_ipv4(host: str) -> bytes:
    try:
        return ipaddress.IPv4Address(host).packed
    except ValueError as exc:
        raise ValueError(f"not an IPv4 address: {host!r}") from exc


def _check_port(port: int) -> None:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")


def encode_peer(peer: PeerInfo) -> bytes:
    """Encode ``peer`` as 6 bytes (4 IPv4 + big-endian port).

    Raises:
        ValueError: the host is not IPv4 or the port is out of range.
    """
    _check_port(peer.port)
    return _pack_ipv4(peer.host) + peer.port.to_bytes(2, "big")


def decode_peer(data: bytes) -> PeerInfo:
    """Decode 6 bytes of compact peer info.

    Raises:
        ValueError: ``data`` is not exactly 6 bytes.
    """
    if len(data) != COMPACT_PEER_LENGTH:
        raise ValueError("compact peer info must be 6 bytes")
    return PeerInfo(f"{data[0]}.{data[1]}.{data[2]}.{data[3]}", int.from_bytes(data[4:6], "big"))


def encode_nodes(nodes: tuple[NodeInfo, ...] | list[NodeInfo]) -> bytes:
    """Concatenate compact node infos (k-rpc ``encodeNodes``).

    Raises:
        ValueError: an id is not 20 bytes, a host not IPv4, or a port out of range.
    """
    out = bytearray()
    for node in nodes:
        if len(node.id) != ID_LENGTH:
            raise ValueError("node id must be 20 bytes")
        _check_port(node.port)
        out += node.id + _pack_ipv4(node.host) + node.port.to_bytes(2, "big")
    return bytes(out)


def decode_nodes(data: bytes) -> tuple[NodeInfo, ...]:
    """Split a ``nodes`` string into :class:`NodeInfo` records.

    Entries with port 0 are skipped, like k-rpc ``parseNodes``.

    Raises:
        ValueError: the length is not a multiple of 26 (k-rpc silently reads
            what it can; we refuse the whole message instead).
    """
    if len(data) % COMPACT_NODE_LENGTH:
        raise ValueError("nodes length is not a multiple of 26")
    nodes = []
    for i in range(0, len(data), COMPACT_NODE_LENGTH):
        addr = decode_peer(data[i + ID_LENGTH:i + COMPACT_NODE_LENGTH])
        if addr.port:
            nodes.append(NodeInfo(data[i:i + ID_LENGTH], addr.host, addr.port))
    return tuple(nodes)


# --------------------------------------------------------------------------- BEP 44 helpers


def immutable_target(v: BValue) -> bytes:
    """BEP 44 target of an immutable item: SHA-1 of the bencoded ``v``."""
    return hashlib.sha1(bencode2.bencode(v)).digest()


def mutable_target(k: bytes, salt: bytes | None = None) -> bytes:
    """BEP 44 target of a mutable item: SHA-1 of ``k`` followed by ``salt``."""
    return hashlib.sha1(k + (salt or b"")).digest()


def signature_data(v: BValue, seq: int, salt: bytes | None = None) -> bytes:
    """The bytes a mutable item's signature covers (BEP 44).

    ``[4:salt<salt>]3:seqi<seq>e1:v<v>``: the bencoded dict without its outer
    ``d``/``e``, as bittorrent-dht ``encodeSigData`` builds it.
    """
    ref: dict[bytes, BValue] = {b"seq": seq, b"v": v}
    if salt:
        ref[b"salt"] = salt
    return bencode2.bencode(ref)[1:-1]


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Ping:
    """BEP 5 ``ping``."""

    method: ClassVar[bytes] = b"ping"
    id: bytes

    def arguments(self) -> dict[bytes, BValue]:
        """The ``a`` dict."""
        return {b"id": self.id}


@dataclass(frozen=True)
class FindNode:
    """BEP 5 ``find_node``; ``target`` may be any length (see module notes)."""

    method: ClassVar[bytes] = b"find_node"
    id: bytes
    target: bytes

    def arguments(self) -> dict[bytes, BValue]:
        """The ``a`` dict."""
        return {b"id": self.id, b"target": self.target}


@dataclass(frozen=True)
class GetPeers:
    """BEP 5 ``get_peers``; grape sends the raw service name as ``info_hash``."""

    method: ClassVar[bytes] = b"get_peers"
    id: bytes
    info_hash: bytes

    def arguments(self) -> dict[bytes, BValue]:
        """The ``a`` dict."""
        return {b"id": self.id, b"info_hash": self.info_hash}


@dataclass(frozen=True)
class AnnouncePeer:
    """BEP 5 ``announce_peer``.

    With ``implied_port`` the receiver uses the UDP source port instead of
    ``port`` (bittorrent-dht ``announce`` sets it when the port is 0).
    """

    method: ClassVar[bytes] = b"announce_peer"
    id: bytes
    info_hash: bytes
    port: int
    token: bytes
    implied_port: bool = False

    def arguments(self) -> dict[bytes, BValue]:
        """The ``a`` dict."""
        return {b"id": self.id, b"implied_port": int(self.implied_port),
                b"info_hash": self.info_hash, b"port": self.port, b"token": self.token}


@dataclass(frozen=True)
class GetItem:
    """BEP 44 ``get``; with ``seq``, a mutable item is only returned if newer."""

    method: ClassVar[bytes] = b"get"
    id: bytes
    target: bytes
    seq: int | None = None

    def arguments(self) -> dict[bytes, BValue]:
        """The ``a`` dict."""
        a: dict[bytes, BValue] = {b"id": self.id, b"target": self.target}
        if self.seq is not None:
            a[b"seq"] = self.seq
        return a


@dataclass(frozen=True)
class PutItem:
    """BEP 44 ``put``. Mutable when ``k`` or ``sig`` is set (bittorrent-dht ``_onput``)."""

    method: ClassVar[bytes] = b"put"
    id: bytes
    token: bytes
    v: BValue
    k: bytes | None = None
    sig: bytes | None = None
    seq: int | None = None
    salt: bytes | None = None
    cas: int | None = None

    @property
    def is_mutable(self) -> bool:
        """True for a mutable put (``k`` or ``sig`` present and non-empty)."""
        return bool(self.k or self.sig)

    def arguments(self) -> dict[bytes, BValue]:
        """The ``a`` dict."""
        a: dict[bytes, BValue] = {b"id": self.id, b"token": self.token, b"v": self.v}
        for key, value in ((b"k", self.k), (b"sig", self.sig), (b"seq", self.seq),
                           (b"salt", self.salt), (b"cas", self.cas)):
            if value is not None:
                a[key] = value
        return a


Query: TypeAlias = Ping | FindNode | GetPeers | AnnouncePeer | GetItem | PutItem


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Response:
    """The ``r`` dict of any response.

    KRPC responses do not name their method, so one record holds every field a
    BEP 5 / BEP 44 answer may carry; the caller knows what it asked.
    ``nodes``/``values`` are None when absent (an empty tuple is "present, empty").
    """

    id: bytes
    nodes: tuple[NodeInfo, ...] | None = None
    values: tuple[PeerInfo, ...] | None = None
    token: bytes | None = None
    v: BValue | None = None
    k: bytes | None = None
    sig: bytes | None = None
    seq: int | None = None

    def fields(self) -> dict[bytes, BValue]:
        """The ``r`` dict (absent fields omitted, like the JS encoder's nulls)."""
        r: dict[bytes, BValue] = {b"id": self.id}
        if self.nodes is not None:
            r[b"nodes"] = encode_nodes(self.nodes)
        if self.values is not None:
            r[b"values"] = [encode_peer(p) for p in self.values]
        for key, value in ((b"token", self.token), (b"v", self.v), (b"k", self.k),
                           (b"sig", self.sig), (b"seq", self.seq)):
            if value is not None:
                r[key] = value
        return r


@dataclass(frozen=True)
class QueryMessage:
    """A query (``y = q``)."""

    transaction_id: bytes
    query: Query
    client_version: bytes | None = None
    read_only: bool = False


@dataclass(frozen=True)
class ResponseMessage:
    """A response (``y = r``); ``requester`` is the BEP 42 ``ip`` field."""

    transaction_id: bytes
    response: Response
    client_version: bytes | None = None
    requester: PeerInfo | None = None


@dataclass(frozen=True)
class ErrorMessage:
    """An error (``y = e``, ``e = [code, message]``)."""

    transaction_id: bytes
    code: int
    message: str
    client_version: bytes | None = None


Message: TypeAlias = QueryMessage | ResponseMessage | ErrorMessage


def encode(message: Message) -> bytes:
    """Bencode ``message``.

    Raises:
        ValueError: a field cannot be encoded (non-IPv4 host, port out of range).
    """
    out: dict[bytes, BValue] = {b"t": message.transaction_id}
    if isinstance(message, QueryMessage):
        out[b"y"] = b"q"
        out[b"q"] = message.query.method
        out[b"a"] = message.query.arguments()
        if message.read_only:
            out[b"ro"] = 1
    elif isinstance(message, ResponseMessage):
        out[b"y"] = b"r"
        out[b"r"] = message.response.fields()
        if message.requester is not None:
            out[b"ip"] = encode_peer(message.requester)
    else:
        out[b"y"] = b"e"
        out[b"e"] = [message.code, message.message.encode("utf-8")]
    if message.client_version is not None:
        out[b"v"] = message.client_version
    return bencode2.bencode(out)


# --------------------------------------------------------------------------- decoding


def decode(data: bytes, *, max_size: int = MAX_PACKET_SIZE) -> Message:
    """Parse one datagram.

    Args:
        data: the raw datagram.
        max_size: datagrams longer than this are refused before parsing.

    Returns:
        The decoded message.

    Raises:
        KrpcError: for any malformed input. For queries whose transaction id
            could be read, ``reply`` says which error to send back (or None to
            stay silent, as bittorrent-dht does).
    """
    if len(data) > max_size:
        raise KrpcError(DropReason.TOO_LARGE, f"{len(data)} bytes")
    try:
        raw = bencode2.bdecode(data)
    except (ValueError, RecursionError, OverflowError) as exc:
        # BencodeDecodeError is a ValueError; so is Python's int-digits limit.
        raise KrpcError(DropReason.BAD_BENCODE, str(exc)[:100]) from None
    if not isinstance(raw, dict):
        raise KrpcError(DropReason.NOT_A_DICT)
    t = raw.get(b"t")
    if not isinstance(t, bytes):
        raise KrpcError(DropReason.BAD_TRANSACTION_ID)
    version = raw.get(b"v")
    if version is not None and not isinstance(version, bytes):
        raise KrpcError(DropReason.BAD_EXTENSION, "v is not a string", transaction_id=t)
    y = raw.get(b"y")
    if y == b"q":
        return _decode_query(raw, t, version)
    if y == b"r":
        return _decode_response(raw, t, version)
    if y == b"e":
        return _decode_error(raw, t, version)
    raise KrpcError(DropReason.BAD_TYPE, "y is not q, r or e", transaction_id=t)


class _Invalid(Exception):
    """Internal: a field failed validation."""


def _opt_bytes(d: Mapping[bytes, object], key: bytes, length: int | None = None) -> bytes | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise _Invalid(f"{key.decode()} is not a string")
    if length is not None and len(value) != length:
        raise _Invalid(f"{key.decode()} must be {length} bytes")
    return value


def _opt_int(d: Mapping[bytes, object], key: bytes) -> int | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, int):
        raise _Invalid(f"{key.decode()} is not an integer")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Invalid(f"{key.decode()} out of 64-bit range")
    return value


def _decode_query(raw: dict[bytes, object], t: bytes, version: bytes | None) -> QueryMessage:
    q = raw.get(b"q")
    if not isinstance(q, bytes):
        raise KrpcError(DropReason.BAD_METHOD, "q is not a string", transaction_id=t,
                        reply=(PROTOCOL_ERROR, "Protocol Error, q is not a string"))
    a = raw.get(b"a")
    if not isinstance(a, dict):
        # bittorrent-dht `_onquery`: `if (!query.a) return` -- no answer.
        raise KrpcError(DropReason.BAD_ARGUMENTS, "a is not a dict", transaction_id=t)
    ro = raw.get(b"ro")
    if ro is not None and not isinstance(ro, int):
        raise KrpcError(DropReason.BAD_EXTENSION, "ro is not an integer", transaction_id=t)
    try:
        query = _build_query(q, a, t)
    except _Invalid as exc:
        raise KrpcError(DropReason.BAD_ARGUMENTS, str(exc), transaction_id=t,
                        reply=(PROTOCOL_ERROR, f"Protocol Error, {exc}")) from None
    return QueryMessage(t, query, version, bool(ro))


def _require(a: Mapping[bytes, object], key: bytes, t: bytes, method: str) -> bytes:
    value = a.get(key)
    if value is None:
        # The exact texts of bittorrent-dht `_onfindnode` / `_ongetpeers`.
        field = key.decode()
        raise KrpcError(DropReason.BAD_ARGUMENTS, f"missing a.{field}", transaction_id=t,
                        reply=(PROTOCOL_ERROR,
                               f"`{method}` missing required `a.{field}` field"))
    if not isinstance(value, bytes):
        raise _Invalid(f"{key.decode()} is not a string")
    return value


def _build_query(q: bytes, a: dict[bytes, object], t: bytes) -> Query:
    node_id = _opt_bytes(a, b"id", ID_LENGTH)
    if node_id is None:
        raise _Invalid("a.id is missing")
    if q == b"ping":
        return Ping(node_id)
    if q == b"find_node":
        return FindNode(node_id, _require(a, b"target", t, "find_node"))
    if q == b"get_peers":
        return GetPeers(node_id, _require(a, b"info_hash", t, "get_peers"))
    if q == b"announce_peer":
        return _build_announce(node_id, a, t)
    if q == b"get":
        target = a.get(b"target")
        if not isinstance(target, bytes):
            # bittorrent-dht `_onget`: `if (!target) return` -- silent.
            raise KrpcError(DropReason.BAD_ARGUMENTS, "get without a.target", transaction_id=t)
        return GetItem(node_id, target, _opt_int(a, b"seq"))
    if q == b"put":
        return _build_put(node_id, a, t)
    raise KrpcError(DropReason.UNKNOWN_METHOD, repr(q[:32]), transaction_id=t,
                    reply=(METHOD_UNKNOWN, "Method Unknown"))


def _build_announce(node_id: bytes, a: dict[bytes, object], t: bytes) -> AnnouncePeer:
    # bittorrent-dht `_onannouncepeer` drops silently on a bad port or a missing
    # info_hash/token (a bad token is answered later, by the node).
    implied = _opt_int(a, b"implied_port")
    port = a.get(b"port")
    if not implied and (not isinstance(port, int) or not 0 < port <= 0xFFFF):
        raise KrpcError(DropReason.BAD_ARGUMENTS, "bad port", transaction_id=t)
    info_hash = a.get(b"info_hash")
    token = a.get(b"token")
    if not isinstance(info_hash, bytes) or not isinstance(token, bytes):
        raise KrpcError(DropReason.BAD_ARGUMENTS, "missing info_hash or token",
                        transaction_id=t)
    port_value = port if isinstance(port, int) and 0 <= port <= 0xFFFF else 0
    return AnnouncePeer(node_id, info_hash, port_value, token, bool(implied))


def _build_put(node_id: bytes, a: dict[bytes, object], t: bytes) -> PutItem:
    v = a.get(b"v")
    token = a.get(b"token")
    # bittorrent-dht `_onput`: `if (!v) return`, `if (!token) return`.
    if v is None or not isinstance(token, bytes):
        raise KrpcError(DropReason.BAD_ARGUMENTS, "put without v or token", transaction_id=t)
    if v == 0:
        # In JS a Buffer is truthy even when empty, but the integer 0 is not: a
        # grape `put {"v": false}` bencodes as i0e and is refused by peers.
        # bittorrent-dht stays silent (the putter waits out a 2 s timeout, then
        # answers "All queries failed"); we answer an error, so the putter reaches
        # the same answer at once (k-rpc `queryAll` reports any non-3xx error as
        # "All queries failed").
        raise KrpcError(DropReason.BAD_ARGUMENTS, "put of a falsy v (0)", transaction_id=t,
                        reply=(PROTOCOL_ERROR, "Protocol Error, v is 0"))
    return PutItem(node_id, token, cast("BValue", v), _opt_bytes(a, b"k"), _opt_bytes(a, b"sig"),
                   _opt_int(a, b"seq"), _opt_bytes(a, b"salt"), _opt_int(a, b"cas"))


def _decode_response(raw: dict[bytes, object], t: bytes,
                     version: bytes | None) -> ResponseMessage:
    r = raw.get(b"r")
    if not isinstance(r, dict):
        raise KrpcError(DropReason.BAD_RESPONSE, "r is not a dict", transaction_id=t)
    try:
        requester = None
        ip = _opt_bytes(raw, b"ip")
        if ip is not None:
            if len(ip) != COMPACT_PEER_LENGTH:
                raise _Invalid("ip must be 6 bytes")
            requester = decode_peer(ip)
        node_id = _opt_bytes(r, b"id", ID_LENGTH)
        if node_id is None:
            raise _Invalid("r.id is missing")
        raw_nodes = _opt_bytes(r, b"nodes")
        nodes = None if raw_nodes is None else decode_nodes(raw_nodes)
        values = _decode_values(r.get(b"values"))
        # Whatever bdecode produced is a valid BValue.
        v = cast("BValue | None", r.get(b"v"))
        response = Response(
            node_id, nodes, values, _opt_bytes(r, b"token"), v,
            _opt_bytes(r, b"k"), _opt_bytes(r, b"sig"), _opt_int(r, b"seq"))
    except (_Invalid, ValueError) as exc:
        raise KrpcError(DropReason.BAD_RESPONSE, str(exc), transaction_id=t) from None
    return ResponseMessage(t, response, version, requester)


def _decode_values(values: object) -> tuple[PeerInfo, ...] | None:
    if values is None:
        return None
    if not isinstance(values, list):
        raise _Invalid("values is not a list")
    peers = []
    for item in values:
        if not isinstance(item, bytes):
            raise _Invalid("values entry is not a string")
        if len(item) == 18:
            continue  # BEP 32 IPv6 peer: not used on an IPv4 grape network.
        peer = decode_peer(item)  # ValueError unless 6 bytes
        if peer.port:  # bittorrent-dht `decodePeers` skips port 0
            peers.append(peer)
    return tuple(peers)


def _decode_error(raw: dict[bytes, object], t: bytes, version: bytes | None) -> ErrorMessage:
    e = raw.get(b"e")
    if not isinstance(e, list) or not e:
        raise KrpcError(DropReason.BAD_ERROR, "e is not a non-empty list", transaction_id=t)
    code = e[0]
    if not isinstance(code, int) or not all(isinstance(x, bytes) for x in e[1:]):
        raise KrpcError(DropReason.BAD_ERROR, "e is not [int, string]", transaction_id=t)
    # k-rpc-socket joins the list with spaces to build its Error message.
    text = b" ".join(x for x in e[1:] if isinstance(x, bytes))
    return ErrorMessage(t, code, text.decode("utf-8", "replace"), version)
