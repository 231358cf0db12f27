"""Ed25519 identity of a node: node id, signing and verification.

The node id is the 32-byte Ed25519 public key (``auction.proto``: "node id = Ed25519
public key"), so any node can check any event or bid without a directory of keys.
Where the key lives on disk is storage's business (:mod:`peer.storage.key_file`).
"""

from __future__ import annotations

from typing import Final

from nacl.bindings import crypto_sign_open
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey

__all__ = ["NODE_ID_BYTES", "SEED_BYTES", "SIGNATURE_BYTES", "Identity", "verify"]

NODE_ID_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
SEED_BYTES: Final = 32


class Identity:
    """A node's signing key and display name.

    Attributes:
        node_id: The 32-byte Ed25519 public key; the node's id on the wire.
        name: The display name, e.g. ``"Client#1"`` (not stored in the key file).
        short_id: The first 8 hex digits of ``node_id``, for logs and status lines.
    """

    __slots__ = ("_signing_key", "name", "node_id", "short_id")

    def __init__(self, signing_key: SigningKey, name: str) -> None:
        self._signing_key = signing_key
        self.node_id: bytes = bytes(signing_key.verify_key)
        self.name: str = name
        self.short_id: str = self.node_id.hex()[:8]

    def __repr__(self) -> str:
        return f"Identity(name={self.name!r}, short_id={self.short_id!r})"

    @classmethod
    def generate(cls, name: str) -> Identity:
        """A fresh identity kept only in memory (tests, benchmarks)."""
        return cls(SigningKey.generate(), name)

    @classmethod
    def from_seed(cls, seed: bytes, name: str) -> Identity:
        """The identity of a 32-byte Ed25519 seed (deterministic keys for tests)."""
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
        return cls(SigningKey(seed), name)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._signing_key.sign(data).signature


def verify(node_id: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``node_id``'s Ed25519 signature over ``data``.

    Never raises: wrong types, wrong lengths and invalid keys are just False, so
    callers can pass whatever a peer sent.
    """
    if (type(node_id) is not bytes or type(data) is not bytes or type(signature) is not bytes
            or len(node_id) != NODE_ID_BYTES or len(signature) != SIGNATURE_BYTES):
        return False
    try:
        # The binding directly (what VerifyKey.verify calls): no key object per call.
        crypto_sign_open(signature + data, node_id)
    except (CryptoError, ValueError, TypeError):
        return False
    return True
