"""KRPC (BitTorrent Mainline DHT) for localgrape: sans-IO codec, routing, tokens, node.

The real grape is a bittorrent-dht node; this package speaks the same wire
protocol (BEP 5 + BEP 44) so localgrape can join a network of real grapes.

* :func:`decode` / :func:`encode`: bytes <-> typed messages; malformed input is
  always a :class:`KrpcError` with a :class:`DropReason`.
* :class:`RoutingTable`: Kademlia k-buckets (k=20, XOR distance).
* :class:`TokenManager`: BEP 5 write tokens from rotating secrets.
* :class:`KrpcStore`: announced peers and BEP 44 items (shared with HTTP).
* :class:`KrpcNode`: the trio UDP node.
* :class:`Traversal` / :func:`run_traversal`: k-rpc's iterative closest-nodes lookup.
* :class:`Dht`: a node that joins a network of grapes, one method per Grape endpoint.
"""

from ._dht import ALL_QUERIES_FAILED as ALL_QUERIES_FAILED
from ._dht import BOOTSTRAP_RETRY as BOOTSTRAP_RETRY
from ._dht import NO_NODES_TO_QUERY as NO_NODES_TO_QUERY
from ._dht import Dht as Dht
from ._dht import DhtStatistics as DhtStatistics
from ._dht import GetResult as GetResult
from ._errors import (
    CAS_MISMATCH as CAS_MISMATCH,
)
from ._errors import (
    GENERIC_ERROR as GENERIC_ERROR,
)
from ._errors import (
    INVALID_SIGNATURE as INVALID_SIGNATURE,
)
from ._errors import (
    MESSAGE_TOO_BIG as MESSAGE_TOO_BIG,
)
from ._errors import (
    METHOD_UNKNOWN as METHOD_UNKNOWN,
)
from ._errors import (
    PROTOCOL_ERROR as PROTOCOL_ERROR,
)
from ._errors import (
    SALT_TOO_BIG as SALT_TOO_BIG,
)
from ._errors import (
    SEQ_LESS_THAN_CURRENT as SEQ_LESS_THAN_CURRENT,
)
from ._errors import (
    SERVER_ERROR as SERVER_ERROR,
)
from ._errors import (
    VERIFICATION_NOT_SUPPORTED as VERIFICATION_NOT_SUPPORTED,
)
from ._errors import (
    DropReason as DropReason,
)
from ._errors import (
    KrpcError as KrpcError,
)
from ._errors import (
    KrpcQueryError as KrpcQueryError,
)
from ._errors import (
    KrpcRemoteError as KrpcRemoteError,
)
from ._errors import (
    KrpcTimeout as KrpcTimeout,
)
from ._messages import (
    ID_LENGTH as ID_LENGTH,
)
from ._messages import (
    MAX_PACKET_SIZE as MAX_PACKET_SIZE,
)
from ._messages import (
    MAX_VALUE_SIZE as MAX_VALUE_SIZE,
)
from ._messages import (
    AnnouncePeer as AnnouncePeer,
)
from ._messages import (
    BValue as BValue,
)
from ._messages import (
    ErrorMessage as ErrorMessage,
)
from ._messages import (
    FindNode as FindNode,
)
from ._messages import (
    GetItem as GetItem,
)
from ._messages import (
    GetPeers as GetPeers,
)
from ._messages import (
    Message as Message,
)
from ._messages import (
    NodeInfo as NodeInfo,
)
from ._messages import (
    PeerInfo as PeerInfo,
)
from ._messages import (
    Ping as Ping,
)
from ._messages import (
    PutItem as PutItem,
)
from ._messages import (
    Query as Query,
)
from ._messages import (
    QueryMessage as QueryMessage,
)
from ._messages import (
    Response as Response,
)
from ._messages import (
    ResponseMessage as ResponseMessage,
)
from ._messages import (
    decode as decode,
)
from ._messages import (
    decode_nodes as decode_nodes,
)
from ._messages import (
    decode_peer as decode_peer,
)
from ._messages import (
    encode as encode,
)
from ._messages import (
    encode_nodes as encode_nodes,
)
from ._messages import (
    encode_peer as encode_peer,
)
from ._messages import (
    immutable_target as immutable_target,
)
from ._messages import (
    mutable_target as mutable_target,
)
from ._messages import (
    signature_data as signature_data,
)
from ._node import (
    QUERY_TIMEOUT as QUERY_TIMEOUT,
)
from ._node import (
    DatagramTransport as DatagramTransport,
)
from ._node import (
    KrpcNode as KrpcNode,
)
from ._node import (
    KrpcNodeStatistics as KrpcNodeStatistics,
)
from ._node import (
    Verifier as Verifier,
)
from ._node import (
    open_udp_transport as open_udp_transport,
)
from ._ratelimit import RateLimiter as RateLimiter
from ._routing import (
    AddResult as AddResult,
)
from ._routing import (
    AddStatus as AddStatus,
)
from ._routing import (
    Contact as Contact,
)
from ._routing import (
    RoutingTable as RoutingTable,
)
from ._routing import (
    distance_key as distance_key,
)
from ._signing import ed25519_verify as ed25519_verify
from ._signing import sign_mutable as sign_mutable
from ._store import KrpcStore as KrpcStore
from ._store import PutRejected as PutRejected
from ._store import StoredItem as StoredItem
from ._tokens import ROTATE_INTERVAL as ROTATE_INTERVAL
from ._tokens import TokenManager as TokenManager
from ._traversal import TokenNode as TokenNode
from ._traversal import Traversal as Traversal
from ._traversal import TraversalResult as TraversalResult
from ._traversal import run_traversal as run_traversal

__all__ = [
    "CAS_MISMATCH", "GENERIC_ERROR", "ID_LENGTH", "INVALID_SIGNATURE", "MAX_PACKET_SIZE",
    "MAX_VALUE_SIZE", "MESSAGE_TOO_BIG", "METHOD_UNKNOWN", "PROTOCOL_ERROR", "QUERY_TIMEOUT",
    "ROTATE_INTERVAL", "SALT_TOO_BIG", "SEQ_LESS_THAN_CURRENT", "SERVER_ERROR",
    "VERIFICATION_NOT_SUPPORTED", "AddResult", "AddStatus", "AnnouncePeer", "BValue",
    "Contact", "DatagramTransport", "DropReason", "ErrorMessage", "FindNode", "GetItem",
    "GetPeers", "KrpcError", "KrpcNode", "KrpcNodeStatistics", "KrpcQueryError",
    "KrpcRemoteError", "KrpcStore", "KrpcTimeout", "Message", "NodeInfo", "PeerInfo", "Ping",
    "PutItem", "PutRejected", "Query", "QueryMessage", "RateLimiter", "Response",
    "ResponseMessage", "RoutingTable", "StoredItem", "TokenManager", "Verifier", "decode",
    "decode_nodes", "decode_peer", "distance_key", "ed25519_verify", "encode", "encode_nodes",
    "encode_peer", "immutable_target", "mutable_target", "open_udp_transport",
    "sign_mutable", "signature_data",
]
__all__ += [
    "ALL_QUERIES_FAILED", "BOOTSTRAP_RETRY", "NO_NODES_TO_QUERY", "Dht", "DhtStatistics",
    "GetResult",
    "TokenNode", "Traversal", "TraversalResult", "run_traversal",
]
