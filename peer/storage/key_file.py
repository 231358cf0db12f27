"""A node's key file: created once, atomically; never replaced when it is damaged.

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
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from nacl.signing import SigningKey

from peer.core.identity import SEED_BYTES, Identity
from peer.storage.durable_file import write_durably

__all__ = ["KEY_FILE_HEADER", "IdentityError", "load_or_create"]

#: First line of a key file; the version lets a later format be told apart.
KEY_FILE_HEADER: Final = "auction-peer-key v1"
_MAX_KEY_FILE_BYTES: Final = 4096  # far above the ~180 bytes of a real one


class IdentityError(Exception):
    """The key file cannot be read or is malformed; the message names the file."""


def load_or_create(path: Path, name: str) -> Identity:
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
    return Identity.from_seed(_read_key_file(path), name)


def _format_key_file(seed: bytes) -> bytes:
    public = bytes(SigningKey(seed).verify_key)
    return f"{KEY_FILE_HEADER}\nseed {seed.hex()}\npublic {public.hex()}\n".encode("ascii")


def _create_key_file(path: Path) -> None:
    # keep_existing: a key another process created meanwhile is the key.
    write_durably(path, _format_key_file(os.urandom(SEED_BYTES)), keep_existing=True)


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
