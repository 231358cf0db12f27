"""ed25519 helpers for BEP 44 mutable items (PyNaCl)."""

from __future__ import annotations

import nacl.exceptions
import nacl.signing

from ._messages import BValue, signature_data

__all__ = ["ed25519_verify", "sign_mutable"]


def ed25519_verify(sig: bytes, message: bytes, public_key: bytes) -> bool:
    """True if ``sig`` is a valid ed25519 signature of ``message`` by ``public_key``.

    Same argument order as bittorrent-dht's ``verify(sig, msg, k)`` option.
    Never raises: malformed keys or signatures are simply invalid.
    """
    if len(sig) != 64 or len(public_key) != 32:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, sig)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    return True


def sign_mutable(seed: bytes, v: BValue, seq: int, salt: bytes | None = None
                 ) -> tuple[bytes, bytes]:
    """Sign a mutable item with the 32-byte ed25519 ``seed``.

    Returns:
        ``(k, sig)``: the public key and the signature of
        :func:`~localgrape.krpc.signature_data`.
    """
    key = nacl.signing.SigningKey(seed)
    sig: bytes = key.sign(signature_data(v, seq, salt)).signature
    k: bytes = bytes(key.verify_key)
    return k, sig
