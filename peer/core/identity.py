"""Ed25519 identity of a node: its key file, node id, and signing/verification.

The node id is the 32-byte Ed25519 public key (``auction.proto``: "node id = Ed25519
public key"), so any node can check any event or bid without a directory of keys.

Key file format (``node.key`` in the data dir, mode 0600), three ASCII lines::

    auction-peer-key v1
    seed <64 hex digits: the 32-byte Ed25519 seed>
    public <64 hex digits: the public key derived from it>

The ``public`` line is redundant on purpose: a seed damaged in place (a flipped bit)
no longer derives the recorded public key, so it is reported instead of silently
turning the node into somebody else. A file that does not parse is never replaced:
:class:`IdentityError` names it and says what is wrong, and a human decides.
"""

from __future__ import annotations

import binascii
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from nacl.bindings import crypto_sign_open
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey

__all__ = ["KEY_FILE_HEADER", "NODE_ID_BYTES", "SIGNATURE_BYTES", "Identity", "IdentityError",
           "verify"]

NODE_ID_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
SEED_BYTES: Final = 32
#: First line of a key file; the version lets a later format be told apart.
KEY_FILE_HEADER: Final = "auction-peer-key v1"
_MAX_KEY_FILE_BYTES: Final = 4096  # far above the ~180 bytes of a real one


class IdentityError(Exception):
    """The key file cannot be read or is malformed; the message names the file."""


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

    @classmethod
    def load_or_create(cls, path: Path, name: str) -> Identity:
        """Load the key at ``path``, creating it (mode 0600) if there is none yet.

        Creation is atomic: the key is written and fsynced under a temporary name
        and then hard-linked into place, so ``path`` never holds half a key, and a
        key created meanwhile by another process is kept and loaded, not replaced.

        Args:
            path: The key file, e.g. ``<data dir>/node.key``. Missing parent
                directories are created with mode 0700.
            name: The display name of this node.

        Raises:
            IdentityError: The file exists but cannot be read or is malformed, or a
                new one cannot be written.
        """
        if not path.exists():
            try:
                _create_key_file(path)
            except OSError as exc:
                raise IdentityError(f"{path}: cannot create the node key: {exc}") from exc
        return cls(SigningKey(_read_key_file(path)), name)

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


def _format_key_file(seed: bytes) -> bytes:
    public = bytes(SigningKey(seed).verify_key)
    return f"{KEY_FILE_HEADER}\nseed {seed.hex()}\npublic {public.hex()}\n".encode("ascii")


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.creating-{os.getpid()}")
    tmp.unlink(missing_ok=True)  # only ever ours (same pid), from a creation that died
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, _format_key_file(os.urandom(SEED_BYTES)))
            os.fsync(fd)
        finally:
            os.close(fd)
        # FileExistsError: another process created one meanwhile; that one is the key.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def _read_key_file(path: Path) -> bytes:
    """The seed stored at ``path``; IdentityError (naming the file) if malformed."""
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read the node key: {exc}") from exc

    def bad(why: str) -> IdentityError:
        return IdentityError(f"{path}: malformed node key file ({why}); it was left as it is."
                             f" Restore it from a backup, or move it away to create a new"
                             f" identity (the node will then have a new id)")

    if len(raw) > _MAX_KEY_FILE_BYTES:
        raise bad(f"larger than {_MAX_KEY_FILE_BYTES} bytes")
    try:
        lines = raw.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise bad("not ASCII text") from None
    if not lines or lines[0].strip() != KEY_FILE_HEADER:
        raise bad(f"the first line is not {KEY_FILE_HEADER!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip():
            label, _, value = line.strip().partition(" ")
            fields[label] = value.strip()
    seed = _hex_field(fields, "seed", bad)
    public = _hex_field(fields, "public", bad)
    if bytes(SigningKey(seed).verify_key) != public:
        raise bad("the seed does not derive the recorded public key: the file is damaged")
    return seed


def _hex_field(fields: dict[str, str], label: str,
               bad: Callable[[str], IdentityError]) -> bytes:
    text = fields.get(label)
    if text is None:
        raise bad(f"no {label!r} line")
    try:
        value = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise bad(f"the {label!r} line is not hex") from None
    if len(value) != SEED_BYTES:
        raise bad(f"the {label!r} line has {len(value)} bytes, expected {SEED_BYTES}")
    return value
