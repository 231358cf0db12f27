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

The parts: :mod:`peer.storage.db_file` (create, check, migrate the file),
:mod:`peer.storage.rows` (a row's columns, CRC and SQL), :mod:`peer.storage.store_errors`
and :mod:`peer.storage.writer_thread`; this module is the store's API and its group commit.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

import outcome
import trio

from peer.storage.db_file import check_file, connect, create, migrate, wal_path
from peer.storage.rows import (
    EVENT_COLUMNS,
    HEADS_SQL,
    INSERT_EVENT_SQL,
    RANGE_SQL,
    UPSERT_META_SQL,
    RawEvent,
    Row,
    StoredEvent,
    checksum,
    decode_raw_row,
    decode_row,
    range_args,
)
from peer.storage.store_errors import (
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
    translate,
    unavailable,
)
from peer.storage.writer_thread import WriterThread

__all__ = ["EventStore", "StoreStatistics"]


_T = TypeVar("_T")


_LOAD_PAGE: Final = 2048  # rows per query in load_all: bounded memory, few round trips


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
        self._writer_thread: WriterThread | None = None
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
            if wal_path(path).exists() and wal_path(path).stat().st_size > 0:
                # Creating a fresh file here would make SQLite discard that log.
                raise StoreCorrupt(f"{path}: the database file is missing but its write-ahead"
                                   f" log {wal_path(path).name} is not; refusing to start"
                                   f" empty")
            create(path)
        check_file(path)
        writer = reader = sync_reader = None
        try:
            writer = connect(path, "rw")
            mode = writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{path}: cannot use WAL journal mode (got {mode!r})")
            # FULL: the WAL is fsynced at every commit, so a returned append survives
            # power loss, not only a crash of this process.
            writer.execute("PRAGMA synchronous=FULL")
            # No-ops on Linux; on macOS plain fsync does not reach the platter.
            writer.execute("PRAGMA fullfsync=ON")
            writer.execute("PRAGMA checkpoint_fullfsync=ON")
            migrate(writer, path)
            reader = connect(path, "ro")
            sync_reader = connect(path, "ro")
        except BaseException as exc:
            for conn in (sync_reader, reader, writer):
                if conn is not None:
                    conn.close()
            if isinstance(exc, sqlite3.Error):
                raise translate(exc, path, "open") from exc
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
            failure = unavailable(exc, self._path)
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
        rows = [(e.author, e.seq, e.data, e.signature, checksum(e))
                for t in batch for e in t.events]
        meta = [item for t in batch for item in t.meta]
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            conn.executemany(INSERT_EVENT_SQL, rows)
            written = conn.total_changes - before
            if meta:
                conn.executemany(UPSERT_META_SQL, meta)
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
                f"SELECT id, {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (last, page_size))
            for row in rows:
                yield decode_row(row[1:], self._path)
            if len(rows) < page_size:
                return
            last = rows[-1][0]

    def heads(self) -> dict[bytes, int]:
        """The highest stored seq of every author."""
        return dict(self._sync_read(HEADS_SQL, ()))

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
        rows = self._sync_read(RANGE_SQL, range_args(author, after_seq, limit))
        return [decode_row(row, self._path) for row in rows]

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
        return dict(await self._async_read(HEADS_SQL, ()))

    async def range_async(self, author: bytes, after_seq: int, limit: int
                          ) -> list[StoredEvent]:
        """:meth:`range` in a worker thread, for the running node (Sync pages)."""
        rows = await self._async_read(RANGE_SQL, range_args(author, after_seq, limit))
        return [decode_row(row, self._path) for row in rows]

    async def range_raw_async(self, author: bytes, after_seq: int, limit: int
                              ) -> list[RawEvent]:
        """:meth:`range_async` as ``(seq, data, signature)`` tuples, checked in the worker
        thread: what a Sync page needs, without a StoredEvent per row.

        Raises:
            StoreCorrupt: A row was damaged on disk.
            StoreError: The read failed.
        """
        self._check_open()
        args = range_args(author, after_seq, limit)
        path = self._path

        def read() -> list[RawEvent]:
            return [decode_raw_row(row, path) for row in self._query(self._reader, RANGE_SQL, args)]

        return await self._in_thread(read, self._read_limiter)

    async def count_async(self) -> int:
        """:meth:`count` in a worker thread, for the running node."""
        rows = await self._async_read("SELECT COUNT(*) FROM events", ())
        return int(rows[0][0])

    def _sync_read(self, sql: str, args: tuple[object, ...]) -> list[Row]:
        self._check_open()
        with self._sync_lock:
            return self._query(self._sync_reader, sql, args)

    async def _async_read(self, sql: str, args: tuple[object, ...]
                          ) -> list[Row]:
        self._check_open()
        return await self._in_thread(lambda: self._query(self._reader, sql, args),
                                     self._read_limiter)

    def _query(self, conn: sqlite3.Connection, sql: str, args: tuple[object, ...]
               ) -> list[Row]:
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, self._path, "read") from exc

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
            self._writer_thread = WriterThread(f"event store writer {self._path.name}")
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
