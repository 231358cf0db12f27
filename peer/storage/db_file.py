"""The database file: created atomically, checked before it is trusted, migrated.

An existing file is checked read-only first (header, size, application id, schema
version, ``PRAGMA quick_check``) and never recreated or repaired, so nothing is
silently lost; a new one is built under a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from peer.storage.durable_file import fsync_dir
from peer.storage.store_errors import StoreCorrupt, StoreError, translate

#: The schema this code writes; :data:`_MIGRATIONS` brings older files up to it.
SCHEMA_VERSION: Final = 1


# "AUCT": marks the file as ours (https://www.sqlite.org/pragma.html#pragma_application_id),
# so a foreign SQLite file at our path is reported instead of being written into.
_APPLICATION_ID: Final = 0x41554354


# https://www.sqlite.org/fileformat.html section 1.3: the 100-byte database header.
_MAGIC: Final = b"SQLite format 3\x00"


_HEADER_SIZE: Final = 100


_QUICK_CHECK_REPORT: Final = 5  # problems quoted in a StoreCorrupt message


_SCHEMA_V1: Final = (
    # One row; later versions migrate from what it says.
    "CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " version INTEGER NOT NULL)",
    # The rowid is the order of first arrival; load_all replays in that order, which is
    # an order the ledger has already accepted (it persists only what it applied).
    # UNIQUE(author, seq) makes INSERT OR IGNORE keep the first row for a slot.
    # crc: SQLite has no page checksums, so quick_check cannot see damage inside a
    # row's bytes; a per-row CRC-32 turns that into StoreCorrupt when it is read.
    "CREATE TABLE events (id INTEGER PRIMARY KEY, author BLOB NOT NULL,"
    " seq INTEGER NOT NULL, data BLOB NOT NULL, signature BLOB NOT NULL,"
    " crc INTEGER NOT NULL, UNIQUE (author, seq))",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
)


# target version -> statements that bring version - 1 up to it (none yet beyond 1).
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {}


@dataclass(slots=True)
class _Header:
    """The fields of the 100-byte database header that tell us the expected size."""

    page_size: int
    pages: int | None  # None when the in-header size is not valid (fileformat 1.3.7)

    @classmethod
    def parse(cls, raw: bytes) -> _Header | None:
        """The header's size fields, or None if the page size is impossible."""
        (page_size,) = struct.unpack_from(">H", raw, 16)
        page_size = 65536 if page_size == 1 else page_size
        if page_size < 512 or page_size & (page_size - 1):
            return None
        change_counter, pages = struct.unpack_from(">II", raw, 24)
        (valid_for,) = struct.unpack_from(">I", raw, 92)
        return cls(page_size, pages if pages and valid_for == change_counter else None)


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def connect(path: Path, mode: str) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT ourselves).

    ``check_same_thread=False`` because trio's worker threads come from a cache;
    each connection is still used by one thread at a time (see EventStore).
    """
    uri = f"file:{urllib.parse.quote(os.fspath(path))}?mode={mode}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                           cached_statements=32)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        if mode.startswith("ro"):
            conn.execute("PRAGMA query_only=ON")
    except BaseException:
        conn.close()
        raise
    return conn


_CREATE_LOCK: Final = threading.Lock()


def create(path: Path) -> None:
    """Create a new, empty store at ``path`` atomically.

    The schema is written to a side file that is linked into place only when
    complete, so a file at ``path`` is always a whole store: an empty or headless
    file there means damage, never "a creation that was interrupted". Linking (not
    renaming) never replaces a store another process created meanwhile.
    """
    with _CREATE_LOCK:  # one creator per process, so the per-pid side file is ours alone
        if not path.exists():
            _create_locked(path)


def _create_locked(path: Path) -> None:
    tmp = path.with_name(f"{path.name}.creating-{os.getpid()}")
    for leftover in (tmp, *(tmp.with_name(tmp.name + s) for s in ("-wal", "-shm", "-journal"))):
        # Only ever a creation of ours (same pid, so that process is gone) interrupted
        # before the link: it never held events.
        leftover.unlink(missing_ok=True)
    # Created 0600 before SQLite opens it; SQLite gives -wal and -shm the same mode.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        conn = connect(tmp, "rw")
        try:
            conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: recorded in the header
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA_V1:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (id, version) VALUES (1, 1)")
            conn.execute("COMMIT")
        finally:
            conn.close()  # last connection: checkpoints and removes the -wal
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # created by another process meanwhile: open that one, keep nothing of ours
        except OSError:
            os.replace(tmp, path)  # a file system without hard links
        fsync_dir(path.parent)
    except sqlite3.Error as exc:
        raise translate(exc, path, "create") from exc
    finally:
        tmp.unlink(missing_ok=True)


def check_file(path: Path) -> None:
    """Refuse a damaged or foreign file before anything opens it for writing."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            raw = f.read(_HEADER_SIZE)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the event store: {exc}") from exc
    if size == 0:
        raise StoreCorrupt(f"{path}: the event store is an empty file (0 bytes); it is"
                           f" created complete, so it was truncated")
    if not raw.startswith(_MAGIC):
        raise StoreCorrupt(f"{path}: not an SQLite database (bad header {raw[:16]!r})")
    if len(raw) < _HEADER_SIZE:
        raise StoreCorrupt(f"{path}: truncated: {size} bytes, shorter than the header")
    header = _Header.parse(raw)
    if header is None:
        raise StoreCorrupt(f"{path}: damaged header (impossible page size)")
    if size % header.page_size:
        raise StoreCorrupt(f"{path}: torn or truncated: {size} bytes is not a whole number"
                           f" of {header.page_size}-byte pages")
    wal = wal_path(path)
    wal_empty = not wal.exists() or wal.stat().st_size == 0
    # With a non-empty WAL the main file may legitimately lag the header; SQLite
    # checks that case itself (lockBtree reports SQLITE_CORRUPT).
    if wal_empty and header.pages is not None and size < header.pages * header.page_size:
        raise StoreCorrupt(f"{path}: truncated: the header says {header.pages} pages of"
                           f" {header.page_size} bytes, the file has {size} bytes")
    try:
        # Without a WAL the main file is the whole database: read it as immutable, so
        # not even the -wal/-shm side files are created next to a file we may refuse.
        conn = connect(path, "ro&immutable=1" if wal_empty else "ro")
    except sqlite3.Error as exc:
        raise translate(exc, path, "open") from exc
    try:
        problems = [str(r[0]) for r in conn.execute(
            f"PRAGMA quick_check({_QUICK_CHECK_REPORT})").fetchall()]
        if problems != ["ok"]:
            found = "; ".join(line for p in problems for line in p.splitlines())
            raise StoreCorrupt(f"{path}: the integrity check failed: {found}")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id != _APPLICATION_ID:
            raise StoreCorrupt(f"{path}: an SQLite database, but not an auction-peer event"
                               f" store (application_id {app_id:#x})")
        version = _version(conn, path)
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path}: schema version {version} is newer than this program"
                             f" supports ({SCHEMA_VERSION}); upgrade auction-peer")
    except sqlite3.Error as exc:
        raise translate(exc, path, "the integrity check") from exc
    finally:
        conn.close()


def _version(conn: sqlite3.Connection, path: Path) -> int:
    try:
        row = conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
    except sqlite3.OperationalError as exc:
        raise StoreCorrupt(f"{path}: the schema_version table is missing ({exc})") from exc
    if row is None or not isinstance(row[0], int):
        raise StoreCorrupt(f"{path}: the schema_version table has no valid row")
    return row[0]


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema up to :data:`SCHEMA_VERSION`, one version per transaction."""
    version = _version(conn, path)
    while version < SCHEMA_VERSION:
        target = version + 1
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _MIGRATIONS[target]:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ? WHERE id = 1", (target,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        version = target
