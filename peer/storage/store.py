"""The durable event log of a node: SQLite in the data dir (DESIGN.md sections 3 and 4).

The store knows nothing of the rules or of protobuf. It keeps opaque rows
``StoredEvent(author, seq, data, signature)``, where ``data`` is the exact
``SignedEvent.event`` bytes that were verified (never a re-serialization), plus a
small key/value table of node metadata.

Durability: the database is in WAL mode with ``synchronous=FULL``, so when
:meth:`EventStore.append` returns, the transaction holding the events has been
fsynced. Only then may the node acknowledge the events to anyone.

Concurrency: writes run in the store's one writer thread, which the store starts
at its first write and stops (and joins) in :meth:`EventStore.close`. Appends that
arrive while a transaction is committing queue up, and the next transaction commits
all of them: one ``BEGIN``/``COMMIT`` and one fsync for many events (group commit).
There is no background task: the caller whose turn it is hands the batch to the
writer thread and waits for it (uncancellably, as ``trio.to_thread.run_sync`` does
by default), so every transaction has a waiting owner and nothing outlives the
store. A long-lived thread fed by a queue costs a fraction of a ``to_thread`` hand-off
per commit (no thread-cache, limiter or context bookkeeping), which matters when
every acknowledged event waits for one.

Order: the log on disk is always a prefix of the appends in the order they were
called. An append is never withdrawn once called (a cancelled caller still waits
for its transaction, a few milliseconds), and after a failed transaction (disk
full, I/O error, read-only file system) every append queued behind it fails too,
and so does every later one until :meth:`EventStore.resume`: a caller that applied
events in memory before appending them can take back exactly the ones that failed
and never finds a later one on disk without an earlier one.

Failure: a file that is not a database, is truncated, or fails ``PRAGMA
quick_check`` raises :class:`StoreCorrupt` naming the file. It is opened read-only
for the check and never recreated or repaired, so nothing is silently lost. Damage
inside a row's bytes, which SQLite cannot see, fails that row's CRC-32 when it is
read (``load_all`` at start reads them all) and raises :class:`StoreCorrupt` too.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import struct
import threading
import urllib.parse
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NoReturn, TypeVar

import outcome
import trio

__all__ = [
    "SCHEMA_VERSION",
    "EventStore",
    "RawEvent",
    "StoreCorrupt",
    "StoreError",
    "StoreStatistics",
    "StoreUnavailable",
    "StoredEvent",
]

_T = TypeVar("_T")
# A result row as sqlite3 returns it; the SQL, not the type system, fixes its shape.
_Row = tuple[Any, ...]
#: One checked row of an author's log without the author: ``(seq, data, signature)``.
RawEvent = tuple[int, bytes, bytes]

#: The schema this code writes; :data:`_MIGRATIONS` brings older files up to it.
SCHEMA_VERSION: Final = 1

# "AUCT": marks the file as ours (https://www.sqlite.org/pragma.html#pragma_application_id),
# so a foreign SQLite file at our path is reported instead of being written into.
_APPLICATION_ID: Final = 0x41554354

# https://www.sqlite.org/fileformat.html section 1.3: the 100-byte database header.
_MAGIC: Final = b"SQLite format 3\x00"
_HEADER_SIZE: Final = 100

# Primary result codes (https://www.sqlite.org/rescode.html) that mean "the bytes
# on disk are wrong", as opposed to "the disk or the OS said no".
_SQLITE_CORRUPT: Final = 11
_SQLITE_NOTADB: Final = 26

_MAX_SEQ: Final = 2**63 - 1  # SQLite INTEGER is a signed 64-bit value
_LOAD_PAGE: Final = 2048  # rows per query in load_all: bounded memory, few round trips
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

_INSERT_EVENT: Final = (
    "INSERT OR IGNORE INTO events (author, seq, data, signature, crc) VALUES (?, ?, ?, ?, ?)"
)
_UPSERT_META: Final = (
    "INSERT INTO meta (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_EVENT_COLUMNS: Final = "author, seq, data, signature, crc"
# Lengths go into the checksum so that bytes shifted between fields are caught too.
_CRC_PREFIX: Final = struct.Struct(">QIII")


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


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the log: opaque to the store.

    Attributes:
        author: The node id of the log's owner.
        seq: Position in the author's log (1, 2, 3, ...).
        data: The ``SignedEvent.event`` bytes, exactly as signed.
        signature: The ``SignedEvent.signature`` bytes.
    """

    author: bytes
    seq: int
    data: bytes
    signature: bytes

    def __post_init__(self) -> None:
        # Checked here so a bad row fails in the caller's task, not inside a
        # group-committed transaction that also holds other callers' events.
        # One expression for the common, valid row (a sync builds one per event);
        # the loop below only runs to say what is wrong.
        seq = self.seq
        if (type(self.author) is bytes and type(self.data) is bytes
                and type(self.signature) is bytes and type(seq) is int
                and 0 <= seq <= _MAX_SEQ):
            return
        for name in ("author", "data", "signature"):
            if not isinstance(getattr(self, name), bytes):
                raise TypeError(f"StoredEvent.{name} must be bytes")
        if not isinstance(self.seq, int) or isinstance(self.seq, bool):
            raise TypeError("StoredEvent.seq must be an int")
        if not 0 <= self.seq <= _MAX_SEQ:
            raise ValueError(f"StoredEvent.seq out of range: {self.seq}")


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """A snapshot of :meth:`EventStore.statistics` (trio style: a frozen record).

    Attributes:
        commits: Transactions committed by append/set_meta.
        appends: Calls of ``append`` and ``set_meta`` that completed.
        events_submitted: Events handed to ``append`` and committed, duplicates included.
        events_written: Events that were new (not an ignored duplicate or conflict).
        largest_commit: Most events in one transaction.
        pending: Calls queued for the next transaction right now.
    """

    commits: int
    appends: int
    events_submitted: int
    events_written: int
    largest_commit: int
    pending: int


@dataclass(eq=False, slots=True)
class _Pending:
    """One append or set_meta waiting for (or inside) a group commit."""

    events: tuple[StoredEvent, ...]
    meta: tuple[tuple[str, bytes], ...] = ()
    done: bool = False
    error: BaseException | None = None


@dataclass(slots=True)
class _Counters:
    commits: int = 0
    appends: int = 0
    events_submitted: int = 0
    events_written: int = 0
    largest_commit: int = 0


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


class EventStore:
    """The SQLite event log of one node.

    Open with :meth:`open` (sync, so the ledger can be rebuilt with :meth:`load_all`
    before the node starts serving), use the async methods from the node's trio
    tasks, and close it when they are done::

        store = EventStore.open(paths.database_path(data_dir))
        with contextlib.closing(store):
            for row in store.load_all():
                ...
            async with trio.open_nursery() as nursery:
                ...  # tasks call await store.append(rows)

    ``async with store:`` closes it on exit too.

    Three connections, each used by one thread at a time: the writer (appends, in the
    store's writer thread, one group-commit turn at a time), the async reader
    (``*_async``, behind its own limiter) and the sync reader (startup and other sync
    callers, behind a lock). WAL lets the readers run while the writer commits.
    """

    def __init__(self, path: Path, writer: sqlite3.Connection, reader: sqlite3.Connection,
                 sync_reader: sqlite3.Connection) -> None:
        """Use :meth:`open`; this only wires already opened connections together."""
        self._path = path
        self._writer = writer
        self._reader = reader
        self._sync_reader = sync_reader
        self._sync_lock = threading.Lock()
        self._writer_thread: _WriterThread | None = None
        self._read_limiter = trio.CapacityLimiter(1)
        self._queue: list[_Pending] = []
        self._committing = False
        self._commit_done = trio.Event()
        self._failure: StoreUnavailable | None = None  # set by a failed transaction
        self._busy = 0  # threads using a connection right now; close() must not race them
        self._closed = False
        self._counters = _Counters()

    # ================================================================== lifecycle

    @classmethod
    def open(cls, path: Path) -> EventStore:
        """Open the store at ``path``, creating it (and its parent dir, 0700) if absent.

        An existing file is first checked read-only (header, size, ``PRAGMA
        quick_check``, our application id and schema version); only if it passes is
        it opened for writing, so a damaged file is never modified.

        Args:
            path: The database file, normally ``paths.database_path(data_dir)``.

        Returns:
            The open store.

        Raises:
            StoreCorrupt: The file is not an SQLite database, is truncated or torn,
                fails the integrity check, or is some other program's database.
            StoreError: The file cannot be opened (permissions, I/O), or it was
                written by a newer version of this program.
        """
        path = Path(path).absolute()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            if _wal_path(path).exists() and _wal_path(path).stat().st_size > 0:
                # Creating a fresh file here would make SQLite discard that log.
                raise StoreCorrupt(f"{path}: the database file is missing but its write-ahead"
                                   f" log {_wal_path(path).name} is not; refusing to start"
                                   f" empty")
            _create(path)
        _check(path)
        writer = reader = sync_reader = None
        try:
            writer = _connect(path, "rw")
            mode = writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{path}: cannot use WAL journal mode (got {mode!r})")
            # FULL: the WAL is fsynced at every commit, so a returned append survives
            # power loss, not only a crash of this process.
            writer.execute("PRAGMA synchronous=FULL")
            # No-ops on Linux; on macOS plain fsync does not reach the platter.
            writer.execute("PRAGMA fullfsync=ON")
            writer.execute("PRAGMA checkpoint_fullfsync=ON")
            _migrate(writer, path)
            reader = _connect(path, "ro")
            sync_reader = _connect(path, "ro")
        except BaseException as exc:
            for conn in (sync_reader, reader, writer):
                if conn is not None:
                    conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, path, "open") from exc
            raise
        return cls(path, writer, reader, sync_reader)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def close(self) -> None:
        """Close the connections. Idempotent.

        Call it once every task using the store has finished (structured
        concurrency guarantees that at nursery exit); it refuses to close under a
        running thread.

        Raises:
            StoreError: A thread is still using the store.
        """
        if self._closed:
            return
        if self._busy:
            raise StoreError(f"{self._path}: close() while an operation is running")
        self._closed = True
        if self._writer_thread is not None:
            self._writer_thread.stop()
            self._writer_thread = None
        for conn in (self._sync_reader, self._reader, self._writer):
            conn.close()

    async def __aenter__(self) -> EventStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def statistics(self) -> StoreStatistics:
        """Counters of the group commit, for tests, benchmarks and ``status``."""
        c = self._counters
        return StoreStatistics(commits=c.commits, appends=c.appends,
                               events_submitted=c.events_submitted,
                               events_written=c.events_written,
                               largest_commit=c.largest_commit, pending=len(self._queue))

    # ================================================================== writes

    async def append(self, events: Sequence[StoredEvent]) -> None:
        """Make ``events`` durable; on return they are committed and fsynced.

        Exact duplicates of stored rows are ignored. A different row for an
        ``(author, seq)`` already stored is ignored too: the first one is never
        overwritten (forks are the ledger's business; the store only never loses
        what it was given first). Events are stored in the order given.

        Concurrent calls share transactions (group commit). Once called, an append
        is not withdrawn: a cancelled caller waits for its transaction all the same
        (the cancellation is delivered at its next checkpoint), so what is on disk
        is always a prefix of the appends in call order.

        Args:
            events: The rows to store.

        Raises:
            StoreUnavailable: This transaction, or an earlier one not yet followed
                by :meth:`resume`, failed; none of these events were stored.
            StoreError: The rows could not be stored for another reason.
            trio.ClosedResourceError: The store is closed.
        """
        batch = tuple(events)
        for event in batch:
            if not isinstance(event, StoredEvent):
                raise TypeError(f"append() takes StoredEvent rows, not {type(event).__name__}")
        await self._submit(_Pending(batch))

    async def set_meta(self, key: str, value: bytes) -> None:
        """Durably set one metadata value (such as the node's name).

        Args:
            key: The name of the value.
            value: Its bytes; replaces any earlier value.

        Raises:
            StoreError: The transaction failed.
            trio.ClosedResourceError: The store is closed.
        """
        if not isinstance(key, str) or not isinstance(value, bytes):
            raise TypeError("set_meta() takes a str key and a bytes value")
        await self._submit(_Pending((), ((key, value),)))

    @property
    def failure(self) -> StoreUnavailable | None:
        """Why appends are refused until :meth:`resume`; None while they are taken."""
        return self._failure

    def resume(self) -> None:
        """Take appends again after a failed transaction.

        Call it once every append that failed has come back to its caller and the
        caller has taken back what it had applied on their behalf; the next append
        then tries the disk again.
        """
        self._failure = None

    async def _submit(self, ticket: _Pending) -> None:
        self._check_open()
        if self._failure is not None:
            await trio.lowlevel.checkpoint()
            reason = self._failure.reason
            raise StoreUnavailable(f"{self._path}: not written, an earlier commit failed"
                                   f" and nothing is written until resume(): {reason}",
                                   reason) from self._failure
        if not ticket.events and not ticket.meta:
            await trio.lowlevel.checkpoint()
            return
        self._queue.append(ticket)
        # Shielded: a queued append is never withdrawn. Withdrawing it would leave a
        # hole whenever a later append (the caller's next seq) was already queued.
        with trio.CancelScope(shield=True):
            while not ticket.done:
                if self._committing:
                    # Someone else's transaction is on disk-time; ours goes in the next.
                    await self._commit_done.wait()
                else:
                    await self._commit_queued()
        if ticket.error is not None:
            raise ticket.error

    async def _commit_queued(self) -> None:
        """Commit everything queued in one transaction, in this task's turn."""
        batch, self._queue = self._queue, []
        self._committing = True
        started = False

        def work() -> int:
            nonlocal started
            started = True
            return self._write(batch)

        try:
            written = await self._in_writer_thread(work)
        except BaseException as exc:
            if not started:
                # Cancelled before the thread ran: nothing was written; hand the batch
                # back, in order, for whoever takes the next turn.
                self._queue[:0] = batch
                raise
            failure = _unavailable(exc, self._path)
            # Everything queued behind the failed transaction fails with it: written
            # later, it could stand on disk without an event it follows.
            failed, self._queue = batch + self._queue, []
            self._failure = failure
            for ticket in failed:
                ticket.done, ticket.error = True, failure
            if not isinstance(exc, Exception):
                raise
        else:
            events = sum(len(ticket.events) for ticket in batch)
            c = self._counters
            c.commits += 1
            c.appends += len(batch)
            c.events_submitted += events
            c.events_written += written
            c.largest_commit = max(c.largest_commit, events)
            for ticket in batch:
                ticket.done = True
        finally:
            self._committing = False
            done, self._commit_done = self._commit_done, trio.Event()
            done.set()

    def _write(self, batch: list[_Pending]) -> int:
        """Runs in the writer thread: one transaction for the whole batch."""
        conn = self._writer
        rows = [(e.author, e.seq, e.data, e.signature, _checksum(e))
                for t in batch for e in t.events]
        meta = [item for t in batch for item in t.meta]
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            conn.executemany(_INSERT_EVENT, rows)
            written = conn.total_changes - before
            if meta:
                conn.executemany(_UPSERT_META, meta)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                # Best effort: the error that got us here is the one to report.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return written

    # ================================================================== reads

    def load_all(self, *, page_size: int = _LOAD_PAGE) -> Iterator[StoredEvent]:
        """Every stored event, in the order first appended, for rebuilding the ledger.

        Streams one page of ``page_size`` rows at a time and holds no connection
        between pages, so the caller may do anything (even other reads) in between.
        That order is the one in which the node persisted them, so within one author
        it is seq order whenever the appender kept it (the ledger does).

        Raises:
            StoreCorrupt: A damaged page was found while reading.
            StoreError: The read failed.
        """
        if page_size < 1:
            raise ValueError("page_size must be positive")
        last = 0
        while True:
            rows = self._sync_read(
                f"SELECT id, {_EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (last, page_size))
            for row in rows:
                yield _decode(row[1:], self._path)
            if len(rows) < page_size:
                return
            last = rows[-1][0]

    def heads(self) -> dict[bytes, int]:
        """The highest stored seq of every author."""
        return dict(self._sync_read(_HEADS, ()))

    def range(self, author: bytes, after_seq: int, limit: int) -> list[StoredEvent]:
        """One page of ``author``'s events with seq > ``after_seq``, in seq order.

        Args:
            author: Whose log.
            after_seq: Exclusive lower bound (0 for the whole log).
            limit: Most rows to return (> 0); fewer means the end was reached.

        Raises:
            StoreCorrupt: A row was damaged on disk.
            StoreError: The read failed.
        """
        rows = self._sync_read(_RANGE, _range_args(author, after_seq, limit))
        return [_decode(row, self._path) for row in rows]

    def count(self) -> int:
        """How many events are stored."""
        rows = self._sync_read("SELECT COUNT(*) FROM events", ())
        return int(rows[0][0])

    def get_meta(self, key: str) -> bytes | None:
        """The metadata value for ``key``, or None if it was never set."""
        rows = self._sync_read("SELECT value FROM meta WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    async def heads_async(self) -> dict[bytes, int]:
        """:meth:`heads` in a worker thread, for the running node."""
        return dict(await self._async_read(_HEADS, ()))

    async def range_async(self, author: bytes, after_seq: int, limit: int
                          ) -> list[StoredEvent]:
        """:meth:`range` in a worker thread, for the running node (Sync pages)."""
        rows = await self._async_read(_RANGE, _range_args(author, after_seq, limit))
        return [_decode(row, self._path) for row in rows]

    async def range_raw_async(self, author: bytes, after_seq: int, limit: int
                              ) -> list[RawEvent]:
        """:meth:`range_async` as ``(seq, data, signature)`` tuples, checked in the worker
        thread: what a Sync page needs, without a StoredEvent per row.

        Raises:
            StoreCorrupt: A row was damaged on disk.
            StoreError: The read failed.
        """
        self._check_open()
        args = _range_args(author, after_seq, limit)
        path = self._path

        def read() -> list[RawEvent]:
            return [_decode_raw(row, path) for row in self._query(self._reader, _RANGE, args)]

        return await self._in_thread(read, self._read_limiter)

    async def count_async(self) -> int:
        """:meth:`count` in a worker thread, for the running node."""
        rows = await self._async_read("SELECT COUNT(*) FROM events", ())
        return int(rows[0][0])

    def _sync_read(self, sql: str, args: tuple[object, ...]) -> list[_Row]:
        self._check_open()
        with self._sync_lock:
            return self._query(self._sync_reader, sql, args)

    async def _async_read(self, sql: str, args: tuple[object, ...]
                          ) -> list[_Row]:
        self._check_open()
        return await self._in_thread(lambda: self._query(self._reader, sql, args),
                                     self._read_limiter)

    def _query(self, conn: sqlite3.Connection, sql: str, args: tuple[object, ...]
               ) -> list[_Row]:
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, self._path, "read") from exc

    # ================================================================== helpers

    async def _in_thread(self, fn: Callable[[], _T], limiter: trio.CapacityLimiter) -> _T:
        # abandon_on_cancel=False (the default): a connection is never left in use by
        # a thread nobody waits for, so close() after the nursery exits is safe.
        self._busy += 1
        try:
            return await trio.to_thread.run_sync(fn, limiter=limiter)
        finally:
            self._busy -= 1

    async def _in_writer_thread(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` in the writer thread; like ``_in_thread``, it cannot be abandoned.

        A cancel that arrives first is honoured before anything is handed over;
        once handed over, the caller waits for the result whatever happens, so the
        connection is never in use by a thread nobody waits for.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._writer_thread is None:
            self._writer_thread = _WriterThread(f"event store writer {self._path.name}")
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()

        def deliver(result: outcome.Outcome[_T]) -> None:
            # Cannot fail: the run waits for this task, which waits uncancellably.
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        self._busy += 1
        try:
            self._writer_thread.submit(fn, deliver)
            result: _T = await trio.lowlevel.wait_task_rescheduled(
                lambda _: trio.lowlevel.Abort.FAILED)
            return result
        finally:
            self._busy -= 1

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"event store {self._path} is closed")


class _WriterThread:
    """The one thread that commits for a store: jobs in through a queue, results
    out through each job's ``deliver`` callback. Owned by the store; ``stop`` joins it."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], Any], Callable[[outcome.Outcome[Any]], None]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], _T], deliver: Callable[[outcome.Outcome[_T]], None]
               ) -> None:
        self._jobs.put((fn, deliver))

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, deliver = job
            result = outcome.capture(fn)
            del fn, job  # nothing of the job stays alive while the thread waits
            deliver(result)
            del deliver, result


_HEADS: Final = "SELECT author, MAX(seq) FROM events GROUP BY author"
_RANGE: Final = (
    f"SELECT {_EVENT_COLUMNS} FROM events WHERE author = ? AND seq > ? ORDER BY seq LIMIT ?"
)


def _range_args(author: bytes, after_seq: int, limit: int) -> tuple[object, ...]:
    if limit < 1:
        raise ValueError("limit must be positive")
    # Clamp so an absurd seq from a peer's heads is "nothing after it", not an
    # OverflowError from the sqlite3 binding.
    return (author, max(-1, min(after_seq, _MAX_SEQ)), limit)


def _crc(author: bytes, seq: int, data: bytes, signature: bytes) -> int:
    # One crc32 over the concatenation: the same value as feeding the parts in turn
    # (as earlier versions did, so stored rows still match), for one call instead of four.
    return zlib.crc32(b"".join((_CRC_PREFIX.pack(seq, len(author), len(data), len(signature)),
                                author, data, signature)))


def _checksum(event: StoredEvent) -> int:
    return _crc(event.author, event.seq, event.data, event.signature)


def _decode(row: _Row, path: Path) -> StoredEvent:
    """A row of ``_EVENT_COLUMNS`` as a StoredEvent, or StoreCorrupt if it was damaged."""
    author, seq, data, signature, crc = row
    # A sound row passes in one expression (every row of a rebuild or a Sync page
    # comes here); :func:`_damaged` says what is wrong with the others.
    if (type(author) is bytes and type(data) is bytes and type(signature) is bytes
            and type(seq) is int and 0 <= seq <= _MAX_SEQ
            and _crc(author, seq, data, signature) == crc):
        return StoredEvent(author, seq, data, signature)
    _damaged(row, path)


def _decode_raw(row: _Row, path: Path) -> RawEvent:
    """:func:`_decode` without building a StoredEvent: ``(seq, data, signature)``."""
    author, seq, data, signature, crc = row
    if (type(author) is bytes and type(data) is bytes and type(signature) is bytes
            and type(seq) is int and 0 <= seq <= _MAX_SEQ
            and _crc(author, seq, data, signature) == crc):
        return seq, data, signature
    _damaged(row, path)


def _damaged(row: _Row, path: Path) -> NoReturn:
    """Raise StoreCorrupt for a row that failed :func:`_decode`'s checks, saying why."""
    author, seq, data, signature, _ = row
    try:
        StoredEvent(author, seq, data, signature)
    except (TypeError, ValueError) as exc:
        # A damaged record header can turn a BLOB into some other type.
        raise StoreCorrupt(f"{path}: a stored event is unreadable ({exc}); the file is"
                           f" damaged") from None
    raise StoreCorrupt(f"{path}: the stored event (author {author.hex()}, seq {seq})"
                       f" fails its checksum; the file is damaged")


def _wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _connect(path: Path, mode: str) -> sqlite3.Connection:
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


def _create(path: Path) -> None:
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
        conn = _connect(tmp, "rw")
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
        _fsync_dir(path.parent)
    except sqlite3.Error as exc:
        raise _translate(exc, path, "create") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check(path: Path) -> None:
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
    wal = _wal_path(path)
    wal_empty = not wal.exists() or wal.stat().st_size == 0
    # With a non-empty WAL the main file may legitimately lag the header; SQLite
    # checks that case itself (lockBtree reports SQLITE_CORRUPT).
    if wal_empty and header.pages is not None and size < header.pages * header.page_size:
        raise StoreCorrupt(f"{path}: truncated: the header says {header.pages} pages of"
                           f" {header.page_size} bytes, the file has {size} bytes")
    try:
        # Without a WAL the main file is the whole database: read it as immutable, so
        # not even the -wal/-shm side files are created next to a file we may refuse.
        conn = _connect(path, "ro&immutable=1" if wal_empty else "ro")
    except sqlite3.Error as exc:
        raise _translate(exc, path, "open") from exc
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
        raise _translate(exc, path, "the integrity check") from exc
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


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
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


def _unavailable(exc: BaseException, path: Path) -> StoreUnavailable:
    """The StoreUnavailable that a failed transaction hands every caller it fails."""
    if isinstance(exc, StoreUnavailable):
        return exc
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    reason = f"{exc} ({name})"
    failure = StoreUnavailable(f"{path}: cannot write the event log: {reason}", reason)
    failure.__cause__ = exc
    return failure


def _translate(exc: BaseException, path: Path, doing: str) -> StoreError:
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

