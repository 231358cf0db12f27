"""Node names to default data dirs, one to one.

``--name NAME`` without ``--data-dir`` means ``$AUCTION_PEER_HOME/<dir name>``. The
dir name escapes every character outside ``A-Z a-z 0-9 _ - .`` as ``%XX`` (UTF-8
bytes), ``%`` itself included, and a leading ``.``: ``Client#1`` -> ``Client%231``,
``Client 1`` -> ``Client%201``, ``Client_1`` stays ``Client_1``. The escaping can be
undone, so two names never share a dir (and its key). A name whose escaped form would
be too long for a file name keeps a prefix of it plus ``~`` and a SHA-256 of the
name; ``~`` is always escaped otherwise, so those dirs cannot meet the others.

Older versions replaced every run of unsafe characters by ``_``, so ``Client#1``,
``Client_1`` and ``Client 1`` all used ``Client_1``. Names of safe characters only
map where they always did. For the others, a dir the old mapping made is not taken
over, since any of the names that mapped there may own it: until it is claimed
(moved to the new dir name, or started once by its plain-named owner, which records
its name in it), the name is refused with a message saying so.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from peer.storage import paths

__all__ = ["NameCollision", "dir_name", "legacy_dir_name", "read_owner", "record_owner",
           "resolve_data_dir"]

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
# File names are at most 255 bytes on common file systems; stay well under.
_MAX_DIR_NAME = 160
_LEGACY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class NameCollision(Exception):
    """A data dir made by an older version for this name may belong to another name."""


def dir_name(name: str) -> str:
    """The data dir name of ``name`` (injective; see the module doc)."""
    escaped = "".join(c if c in _SAFE else _escape(c) for c in name)
    if escaped.startswith("."):
        escaped = "%2E" + escaped[1:]  # never hidden, never "." or ".."
    if len(escaped) > _MAX_DIR_NAME:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
        escaped = f"{escaped[:_MAX_DIR_NAME - 65]}~{digest}"
    return escaped


def legacy_dir_name(name: str) -> str:
    """The data dir name older versions used for ``name`` (many names to one)."""
    return _LEGACY_UNSAFE.sub("_", name).strip("._") or "node"


def read_owner(data_dir: Path) -> str | None:
    """The name recorded by the last node that ran on ``data_dir``, if any."""
    try:
        return paths.owner_path(data_dir).read_text(encoding="utf-8").strip() or None
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None


def record_owner(data_dir: Path, name: str) -> None:
    """Note in ``data_dir`` which name runs on it (read when older dirs are looked up).

    Replaced atomically, so a crash never leaves half a name. Raises OSError when
    the data dir cannot be written (full, read-only); the caller decides.
    """
    if read_owner(data_dir) == name:
        return
    path = paths.owner_path(data_dir)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(name + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_data_dir(name: str) -> Path:
    """The data dir of ``--name NAME``, refusing a dir an older version may have shared.

    Raises:
        NameCollision: Only an older version's dir exists for ``name``, and nothing
            says whether it is this name's; the message says how to settle it.
    """
    home = paths.home()
    new = home / dir_name(name)
    legacy = home / legacy_dir_name(name)
    if legacy == new or new.exists() or not legacy.is_dir():
        return new
    owner = read_owner(legacy)
    if owner == name:
        return legacy
    if owner is not None:
        return new  # another name's dir: this one starts afresh in its own
    raise NameCollision(
        f"{legacy} was made by an older version, which gave one data dir to all the names "
        f"that differ only in characters other than letters, digits, '.', '_' and '-' "
        f"({name!r}, {legacy.name!r}, ...). It is not taken over silently: if it is "
        f"{name!r}'s, rename it to {new}; if it belongs to {legacy.name!r}, start that "
        f"node once (it records its name there) and then {name!r} gets its own dir; or "
        f"pass --data-dir to choose")


def _escape(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
