"""The Hello handshake: each side proves it holds the key of the node id it claims.

Sans-IO: this module builds and checks the signed messages; ``peer.net.mesh`` (caller)
and ``peer.node`` (callee) carry them over ``Hello`` and ``Prove``.

::

    caller A                                             callee B
      Hello(node_id=A, challenge=Na, address=X) ─────────▶  X must be where B was reached
      ◀──────── HelloReply(node_id=B, challenge=Nb, proof=sign_B(CALLEE, Na, A, B, Nb, X))
      Prove(node_id=A, challenge=Nb, proof=sign_A(CALLER, Na, A, B, Nb, X)) ─────────▶

Why each piece is there:

- **Fresh challenges** (32 random bytes each side): a recorded proof answers one
  challenge only, so it cannot be replayed. The callee keeps each challenge it
  issued until it is answered once (``Challenges``), then forgets it.
- **Both ids in both messages, in fixed roles**: a proof made for one pair of nodes
  is worth nothing for another pair or with the roles swapped.
- **Two context strings** (one per role): a callee's signature can never serve as a
  caller's, so a node cannot be made to prove something by reflecting its own
  Hello back at it.
- **The dialed address**: without it, an impostor listed in Grape could relay a
  bidder's Hello to the real seller and pass the seller's proof back as its own.
  The callee signs only an address at which the connection really reached it (the
  socket's local address), and the caller accepts only a proof over the address it
  dialed, so a relayed proof names the wrong address.
- **The TLS certificate** (on a TLS connection, ``peer.net.tls``): both proofs also cover
  the SHA-256 of the certificate the callee presented, under their own context
  strings. A relay that terminates TLS with a certificate of its own cannot get a
  proof over that certificate from the real node, so the caller refuses it, and
  everything after the handshake travels inside the TLS session the proofs name.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from peer.core.identity import NODE_ID_BYTES, Identity, verify

__all__ = [
    "BINDING_BYTES",
    "CALLEE_CONTEXT",
    "CALLER_CONTEXT",
    "CHALLENGE_BYTES",
    "MAX_ADDRESS_BYTES",
    "MAX_PENDING_CHALLENGES",
    "PENDING_CHALLENGE_SECONDS",
    "TLS_CALLEE_CONTEXT",
    "TLS_CALLER_CONTEXT",
    "Challenges",
    "HandshakeError",
    "Pending",
    "callee_message",
    "caller_message",
    "new_challenge",
    "same_endpoint",
    "verify_callee",
    "verify_caller",
]

CALLEE_CONTEXT: Final = b"auction-peer/hello/v1/callee\x00"
CALLER_CONTEXT: Final = b"auction-peer/hello/v1/caller\x00"
#: The same roles on a TLS connection: the transcript then also holds the SHA-256 of
#: the callee's certificate (``BINDING_BYTES``), and a proof made for one kind of
#: connection never passes for the other.
TLS_CALLEE_CONTEXT: Final = b"auction-peer/hello/v1/tls-callee\x00"
TLS_CALLER_CONTEXT: Final = b"auction-peer/hello/v1/tls-caller\x00"
BINDING_BYTES: Final = 32
CHALLENGE_BYTES: Final = 32
MAX_ADDRESS_BYTES: Final = 300  # "host:port"; far above an IPv6 literal with a port
#: Challenges a callee keeps waiting for their Prove; the oldest is dropped beyond it.
MAX_PENDING_CHALLENGES: Final = 1024
#: How long a callee waits for the Prove that answers its challenge.
PENDING_CHALLENGE_SECONDS: Final = 30.0


class HandshakeError(Exception):
    """A handshake message does not prove what it claims; the message says why."""


def new_challenge() -> bytes:
    return os.urandom(CHALLENGE_BYTES)


def _transcript(context: bytes, caller_challenge: bytes, caller_id: bytes, callee_id: bytes,
                callee_challenge: bytes, address: str, binding: bytes) -> bytes:
    for what, value, size in (("caller challenge", caller_challenge, CHALLENGE_BYTES),
                              ("callee challenge", callee_challenge, CHALLENGE_BYTES),
                              ("caller id", caller_id, NODE_ID_BYTES),
                              ("callee id", callee_id, NODE_ID_BYTES)):
        if type(value) is not bytes or len(value) != size:
            raise HandshakeError(f"the {what} is not {size} bytes")
    if binding and (type(binding) is not bytes or len(binding) != BINDING_BYTES):
        raise HandshakeError(f"the certificate binding is not {BINDING_BYTES} bytes")
    encoded = address.encode("utf-8")
    if not encoded or len(encoded) > MAX_ADDRESS_BYTES:
        raise HandshakeError(f"the address is empty or longer than {MAX_ADDRESS_BYTES} bytes")
    # Fixed-size fields first, the one variable field last and length-prefixed: two
    # different transcripts never serialize to the same bytes.
    # A binding comes with its own context string (the caller picks the pair), so
    # the two layouts never meet under one context.
    return b"".join((context, caller_challenge, caller_id, callee_id, callee_challenge,
                     binding, struct.pack(">H", len(encoded)), encoded))


def callee_message(caller_challenge: bytes, caller_id: bytes, callee_id: bytes,
                   callee_challenge: bytes, address: str, binding: bytes = b"") -> bytes:
    """What the callee signs in ``HelloReply.proof``. ``binding``: SHA-256 of the
    callee's TLS certificate on a TLS connection, empty on a plain one."""
    return _transcript(TLS_CALLEE_CONTEXT if binding else CALLEE_CONTEXT, caller_challenge,
                       caller_id, callee_id, callee_challenge, address, binding)


def caller_message(caller_challenge: bytes, caller_id: bytes, callee_id: bytes,
                   callee_challenge: bytes, address: str, binding: bytes = b"") -> bytes:
    """What the caller signs in ``ProveRequest.proof`` (``binding`` as above)."""
    return _transcript(TLS_CALLER_CONTEXT if binding else CALLER_CONTEXT, caller_challenge,
                       caller_id, callee_id, callee_challenge, address, binding)


def verify_callee(caller_challenge: bytes, caller_id: bytes, address: str,
                  claimed_id: bytes, callee_challenge: bytes, proof: bytes,
                  binding: bytes = b"") -> None:
    """Check a ``HelloReply`` against the Hello we sent; raises HandshakeError.

    ``binding``: SHA-256 of the certificate our TLS connection was shown (empty on
    a plain connection): the proof must be over that certificate.
    """
    if not proof:
        raise HandshakeError("no proof of its key in the Hello reply")
    message = callee_message(caller_challenge, caller_id, claimed_id, callee_challenge,
                             address, binding)
    if not verify(claimed_id, message, proof):
        if binding:
            raise HandshakeError("the Hello proof is not its key's signature over our "
                                 "challenge and the TLS certificate this connection saw")
        raise HandshakeError("the Hello proof is not its key's signature over our challenge")


def sign_caller(identity: Identity, caller_challenge: bytes, callee_id: bytes,
                callee_challenge: bytes, address: str, binding: bytes = b"") -> bytes:
    """The caller's proof for ``ProveRequest`` (after ``verify_callee`` passed)."""
    return identity.sign(caller_message(caller_challenge, identity.node_id, callee_id,
                                        callee_challenge, address, binding))


def verify_caller(pending: Pending, callee_id: bytes, caller_id: bytes, proof: bytes) -> None:
    """Check a ``ProveRequest`` against the challenge it answers; raises HandshakeError."""
    if caller_id != pending.caller_id:
        raise HandshakeError("Prove names another node than its Hello did")
    message = caller_message(pending.caller_challenge, caller_id, callee_id,
                             pending.callee_challenge, pending.address, pending.binding)
    if not verify(caller_id, message, proof):
        raise HandshakeError("the Prove proof is not its key's signature over our challenge")


@dataclass(frozen=True)
class Pending:
    """A challenge this node issued in a HelloReply, waiting for its Prove."""

    caller_id: bytes
    caller_challenge: bytes
    callee_challenge: bytes
    address: str
    expires: float
    binding: bytes = b""  # SHA-256 of our certificate, when the Hello came over TLS


class Challenges:
    """The callee's side: challenges issued, each answerable once, bounded in number
    (``MAX_PENDING_CHALLENGES``, oldest dropped) and in age
    (``PENDING_CHALLENGE_SECONDS``). Times are whatever clock the caller passes."""

    def __init__(self, limit: int = MAX_PENDING_CHALLENGES,
                 ttl: float = PENDING_CHALLENGE_SECONDS) -> None:
        self._pending: OrderedDict[bytes, Pending] = OrderedDict()
        self._limit = limit
        self._ttl = ttl

    def __len__(self) -> int:
        return len(self._pending)

    def issue(self, identity: Identity, caller_id: bytes, caller_challenge: bytes,
              address: str, now: float, binding: bytes = b"") -> tuple[bytes, bytes]:
        """A fresh challenge and our proof for a Hello; raises HandshakeError when the
        Hello's fields are malformed. ``binding``: SHA-256 of our TLS certificate when
        the Hello came over TLS, else empty."""
        callee_challenge = new_challenge()
        proof = identity.sign(callee_message(caller_challenge, caller_id, identity.node_id,
                                             callee_challenge, address, binding))
        self._expire(now)
        while len(self._pending) >= self._limit:
            self._pending.popitem(last=False)
        self._pending[callee_challenge] = Pending(caller_id, caller_challenge,
                                                  callee_challenge, address, now + self._ttl,
                                                  binding)
        return callee_challenge, proof

    def take(self, callee_challenge: bytes, now: float) -> Pending:
        """The pending handshake ``callee_challenge`` answers, forgotten as it is taken
        (a second Prove with the same challenge is refused); raises HandshakeError."""
        self._expire(now)
        pending = self._pending.pop(callee_challenge, None) if type(callee_challenge) is bytes \
            else None
        if pending is None:
            raise HandshakeError("Prove answers no challenge of ours (unknown, used or expired)")
        return pending

    def _expire(self, now: float) -> None:
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if oldest.expires > now:
                return
            self._pending.popitem(last=False)


def same_endpoint(address: str, local: object) -> bool:
    """Whether ``address`` ("host:port", as dialed) names ``local``, the socket address
    (``(host, port, ...)``) at which a connection reached us.

    Only literal IP addresses match: a name could resolve elsewhere for the caller.
    An IPv4 address seen on a dual-stack socket as ``::ffff:a.b.c.d`` matches
    ``a.b.c.d``.
    """
    if not isinstance(local, tuple) or len(local) < 2:
        return False
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return False
    try:
        dialed = _plain(ipaddress.ip_address(host.strip("[]")))
        reached = _plain(ipaddress.ip_address(str(local[0]).split("%", 1)[0]))
    except ValueError:
        return False
    return dialed == reached and int(port) == local[1]


def _plain(ip: ipaddress.IPv4Address | ipaddress.IPv6Address
           ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
