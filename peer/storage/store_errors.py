"""How the event store fails: errors that name the file and say why.

:class:`StoreCorrupt` means the bytes on disk are wrong (never repaired, a human
decides); :class:`StoreUnavailable` means the disk or the OS refused a write (full,
read-only, I/O error): a state the node rides out, serving reads until it can write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final


class StoreError(Exception):
    """The event store could not do what was asked; the message names the file."""


class StoreCorrupt(StoreError):
    """The database file is not a readable event store: garbage, torn, or damaged.

    The file is left exactly as found; recovering it is for a human (or a backup).
    """


class StoreUnavailable(StoreError):
    """A transaction failed (disk full, I/O error, read-only file system): nothing of
    it was stored, and nothing appended after it is stored until
    :meth:`EventStore.resume`. The message names the file and SQLite's reason.

    Attributes:
        reason: What went wrong, without the file name (``"database or disk is full
            (SQLITE_FULL)"``), for rejections shown to users.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def unavailable(exc: BaseException, path: Path) -> StoreUnavailable:
    """The StoreUnavailable that a failed transaction hands every caller it fails."""
    if isinstance(exc, StoreUnavailable):
        return exc
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    reason = f"{exc} ({name})"
    failure = StoreUnavailable(f"{path}: cannot write the event log: {reason}", reason)
    failure.__cause__ = exc
    return failure


def translate(exc: BaseException, path: Path, doing: str) -> StoreError:
    """Turn an sqlite3 (or other) error into a StoreError that names the file."""
    if isinstance(exc, StoreError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    message = f"{path}: {doing} failed: {exc} ({name})"
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StoreCorrupt(message)
    return StoreError(message)


# Primary result codes (https://www.sqlite.org/rescode.html) that mean "the bytes
# on disk are wrong", as opposed to "the disk or the OS said no".
_SQLITE_CORRUPT: Final = 11


_SQLITE_NOTADB: Final = 26
