"""Sealed reserves: a commitment in the Open, the value revealed in the Close.

A public reserve tells every bidder the seller's minimum; a sealed one hides it until the
auction closes, and still binds the seller to it:

- The ``Open`` carries ``commitment = sha256(DOMAIN || key || reserve)`` with a random
  32-byte ``key``: hiding (the reserve is a short decimal that anyone could try, the key
  is not), and binding (no other ``(key, reserve)`` pair gives the same hash).
- The ``Close`` reveals ``key`` and ``reserve``; every node checks them against the
  commitment and refuses a ``Close`` that does not (a broken rule, like a late Accept),
  so the seller can neither raise nor drop its reserve after seeing the bids. A seller
  that will not reveal cannot close: the auction stays ended and unsold.
- The seller's node must be able to reveal after a restart, from its log alone, so the
  ``Open`` also carries a box only the seller can open: a nonce, and the reserve
  XOR a pad derived from the seller's Ed25519 signature over that nonce (signatures
  are deterministic, RFC 8032), whose hash is also the key. No extra secret file.

Pure: signing is the caller's (:class:`Signer`), nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Final, Protocol

from peer.core.rules import MAX_AMOUNT_CHARS

__all__ = [
    "BOX_BYTES",
    "COMMITMENT_BYTES",
    "KEY_BYTES",
    "Reveal",
    "Sealed",
    "Signer",
    "commitment",
    "open_box",
    "seal",
    "verify_reveal",
]

_DOMAIN: Final = b"auction-peer sealed reserve v1\x00"
_NONCE_BYTES: Final = 16
_TEXT_BYTES: Final = 32  # a reserve is at most MAX_AMOUNT_CHARS (30) ASCII characters
KEY_BYTES: Final = 32
COMMITMENT_BYTES: Final = 32
BOX_BYTES: Final = _NONCE_BYTES + _TEXT_BYTES

assert MAX_AMOUNT_CHARS <= _TEXT_BYTES


class Signer(Protocol):
    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Sealed:
    """What an ``Open`` carries for a sealed reserve."""

    commitment: bytes
    box: bytes


@dataclass(frozen=True, slots=True)
class Reveal:
    """What a ``Close`` carries to reveal a sealed reserve."""

    reserve: str
    key: bytes


def commitment(key: bytes, reserve: str) -> bytes:
    """sha256(DOMAIN || key || reserve): what the Open commits to."""
    return hashlib.sha256(_DOMAIN + key + reserve.encode("ascii")).digest()


def _key_and_pad(signer: Signer, nonce: bytes) -> tuple[bytes, bytes]:
    secret = signer.sign(_DOMAIN + b"box" + nonce)
    key = hashlib.sha256(_DOMAIN + b"key" + secret).digest()
    pad = hashlib.sha256(_DOMAIN + b"pad" + secret).digest()
    return key, pad


def seal(signer: Signer, reserve: str, nonce: bytes | None = None) -> Sealed:
    """Seal ``reserve`` (an already checked amount text) for an Open by ``signer``."""
    text = reserve.encode("ascii")
    if len(text) > _TEXT_BYTES:
        raise ValueError(f"a reserve of {len(text)} characters does not fit")
    nonce = os.urandom(_NONCE_BYTES) if nonce is None else nonce
    key, pad = _key_and_pad(signer, nonce)
    sealed_text = bytes(a ^ b for a, b in zip(text.ljust(_TEXT_BYTES, b"\x00"), pad,
                                               strict=True))
    return Sealed(commitment(key, reserve), nonce + sealed_text)


def open_box(signer: Signer, sealed: Sealed) -> Reveal | None:
    """The seller's own reveal, from its Open's box; None if the box is not its own."""
    box = sealed.box
    if len(box) != BOX_BYTES:
        return None
    key, pad = _key_and_pad(signer, box[:_NONCE_BYTES])
    text = bytes(a ^ b for a, b in zip(box[_NONCE_BYTES:], pad, strict=True)).rstrip(b"\x00")
    try:
        reserve = text.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not hmac.compare_digest(commitment(key, reserve), sealed.commitment):
        return None
    return Reveal(reserve, key)


def verify_reveal(sealed_commitment: bytes, reveal: Reveal) -> bool:
    """Whether ``reveal`` opens ``sealed_commitment`` (what every node checks on a Close)."""
    if len(reveal.key) != KEY_BYTES or not reveal.reserve.isascii():
        return False
    return hmac.compare_digest(commitment(reveal.key, reveal.reserve), sealed_commitment)
