"""Small files of a data dir written whole or not at all: the node key, the TLS
certificate, the remembered port.

Written under a temporary name (mode 0600), fsynced, moved into place, and the
directory fsynced, so a crash at any point leaves the old file or the new one, never
a torn one, and never a half-written key.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["fsync_dir", "write_durably"]


def write_durably(path: Path, data: bytes, *, keep_existing: bool = False) -> None:
    """Make ``path`` hold ``data`` (mode 0600), durably and atomically.

    ``keep_existing``: if another process created ``path`` meanwhile, keep its file
    (the node key: the first one made is the key) instead of replacing it.
    Missing parent directories are created with mode 0700.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.creating-{os.getpid()}")
    tmp.unlink(missing_ok=True)  # only ever ours (same pid), from a write that died
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if keep_existing:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
