"""peer.storage.store: the durable event log (round trip, ordering, paging, group commit, model)."""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.storage.db_file import SCHEMA_VERSION
from peer.storage.rows import StoredEvent
from peer.storage.store import EventStore
from peer.storage.store_errors import StoreCorrupt, StoreError, StoreUnavailable

A, B, C = b"A" * 32, b"B" * 32, b"C" * 32


def ev(author: bytes, seq: int, data: bytes | None = None, sig: bytes = b"s" * 64
       ) -> StoredEvent:
    """An event whose default data names its slot, so mix-ups show in asserts."""
    return StoredEvent(author=author, seq=seq,
                       data=data if data is not None else author[:1] + seq.to_bytes(4, "big"),
                       signature=sig)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "node" / "events.sqlite3"


@pytest.fixture
def store(db: Path) -> Iterator[EventStore]:
    with closing(EventStore.open(db)) as s:
        yield s


# ---------------------------------------------------------------- opening


def test_open_creates_private_dir_and_file_in_wal_mode_with_full_sync(db: Path) -> None:
    with closing(EventStore.open(db)) as s:
        assert s.path == db
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        # The connection that commits is the one whose settings make acks durable.
        writer = s._writer
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        version = writer.execute("SELECT version FROM schema_version").fetchone()[0]
        assert version == SCHEMA_VERSION
    # No creation leftovers, and a clean close folds the WAL back into the file.
    assert sorted(p.name for p in db.parent.iterdir()) == ["events.sqlite3"]


def test_reopen_keeps_everything(db: Path) -> None:
    async def write() -> None:
        async with EventStore.open(db) as s:
            await s.append([ev(A, 1), ev(A, 2), ev(B, 1)])
            await s.set_meta("name", b"Client#1")

    trio.run(write)
    with closing(EventStore.open(db)) as s:
        assert list(s.load_all()) == [ev(A, 1), ev(A, 2), ev(B, 1)]
        assert s.get_meta("name") == b"Client#1"
        assert s.get_meta("absent") is None


def test_newer_schema_is_refused_without_touching_the_file(db: Path) -> None:
    EventStore.open(db).close()
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    before = db.read_bytes()
    with pytest.raises(StoreError, match="newer") as info:
        EventStore.open(db)
    assert not isinstance(info.value, StoreCorrupt)
    assert str(db) in str(info.value)
    assert db.read_bytes() == before


def test_a_leftover_of_an_interrupted_creation_is_replaced(db: Path) -> None:
    db.parent.mkdir(mode=0o700)
    leftover = db.with_name(f"{db.name}.creating-{os.getpid()}")
    leftover.write_bytes(b"half-written")
    EventStore.open(db).close()
    assert sorted(p.name for p in db.parent.iterdir()) == ["events.sqlite3"]


def test_concurrent_first_opens_share_one_file(db: Path) -> None:
    # Creation links the finished file into place, so a racing creator never
    # replaces a store another one is already using.
    stores: list[EventStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(EventStore.open(db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert len(stores) == 4
        trio.run(stores[0].append, [ev(A, 1)])
        assert [s.count() for s in stores] == [1, 1, 1, 1]
    finally:
        for s in stores:
            s.close()


# ---------------------------------------------------------------- writes and reads


async def test_round_trip_and_counts(store: EventStore) -> None:
    rows = [ev(A, 1), ev(A, 2), ev(B, 1), ev(C, 1), ev(C, 2), ev(C, 3)]
    await store.append(rows)
    assert list(store.load_all()) == rows
    assert store.count() == await store.count_async() == 6
    assert store.heads() == await store.heads_async() == {A: 2, B: 1, C: 3}


async def test_exact_duplicates_are_ignored(store: EventStore) -> None:
    await store.append([ev(A, 1), ev(A, 2)])
    await store.append([ev(A, 2), ev(A, 1), ev(A, 3), ev(A, 3)])
    assert list(store.load_all()) == [ev(A, 1), ev(A, 2), ev(A, 3)]
    stats = store.statistics()
    assert (stats.events_submitted, stats.events_written) == (6, 3)


async def test_a_conflicting_row_never_replaces_the_first(store: EventStore) -> None:
    first = ev(A, 1, data=b"first", sig=b"1" * 64)
    await store.append([first])
    await store.append([ev(A, 1, data=b"second", sig=b"2" * 64)])
    # Within one call too: the earlier row of the batch wins.
    await store.append([ev(B, 1, data=b"b-first"), ev(B, 1, data=b"b-second")])
    assert list(store.load_all()) == [first, ev(B, 1, data=b"b-first")]


async def test_load_all_replays_in_first_appended_order_across_pages(store: EventStore
                                                                     ) -> None:
    # Interleaved authors, as a node persists them; replaying in this order gives the
    # ledger every auction before the bids on it.
    order = [ev(A, 1), ev(B, 1), ev(A, 2), ev(C, 1), ev(B, 2), ev(A, 3), ev(C, 2)]
    for i in range(0, len(order), 2):
        await store.append(order[i:i + 2])
    await store.append([ev(A, 2), ev(B, 1)])  # duplicates do not move rows
    for page_size in (1, 2, 3, 7, 100):
        assert list(store.load_all(page_size=page_size)) == order


async def test_load_all_holds_nothing_between_pages(store: EventStore) -> None:
    await store.append([ev(A, seq) for seq in range(1, 11)])
    seen = []
    for row in store.load_all(page_size=3):
        seen.append(row)
        # Other reads (and closing the iteration early) work mid-stream.
        assert store.count() == 10
        if len(seen) == 5:
            break
    assert seen == [ev(A, seq) for seq in range(1, 6)]


async def test_range_pages_through_one_author(store: EventStore) -> None:
    await store.append([ev(author, seq) for seq in range(1, 11) for author in (A, B)])
    pages, after = [], 0
    while True:
        page = await store.range_async(A, after, 4)
        pages.append([r.seq for r in page])
        if len(page) < 4:
            break
        after = page[-1].seq
    assert pages == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert store.range(A, 0, 100) == [ev(A, seq) for seq in range(1, 11)]
    assert store.range(B, 8, 100) == [ev(B, 9), ev(B, 10)]
    assert store.range(C, 0, 100) == []
    assert store.range(A, 2**64, 5) == []  # a peer's absurd head is "nothing after"
    with pytest.raises(ValueError, match="limit"):
        store.range(A, 0, 0)


async def test_range_raw_is_range_without_the_author(store: EventStore) -> None:
    await store.append([ev(author, seq) for seq in range(1, 11) for author in (A, B)])
    for author, after, limit in [(A, 0, 100), (B, 3, 4), (A, 10, 5), (C, 0, 5)]:
        assert await store.range_raw_async(author, after, limit) == [
            (r.seq, r.data, r.signature) for r in store.range(author, after, limit)]
    assert await store.range_raw_async(A, 2**64, 5) == []
    with pytest.raises(ValueError, match="limit"):
        await store.range_raw_async(A, 0, 0)


def test_the_row_checksum_format_is_unchanged(db: Path) -> None:
    # Files written by earlier versions must still pass: CRC-32 of the big-endian
    # (seq u64, author, data and signature lengths u32) prefix, then the three fields.
    row = ev(A, 7, data=b"event bytes", sig=b"s" * 64)
    prefix = (7).to_bytes(8, "big") + b"".join(n.to_bytes(4, "big") for n in (32, 11, 64))
    expected = zlib.crc32(prefix + A + b"event bytes" + b"s" * 64)

    async def write() -> None:
        async with EventStore.open(db) as store:
            await store.append([row])

    trio.run(write)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT crc FROM events").fetchall() == [(expected,)]


async def test_metadata_overwrites(store: EventStore) -> None:
    await store.set_meta("name", b"one")
    await store.set_meta("name", b"two")
    assert store.get_meta("name") == b"two"


async def test_empty_append_commits_nothing(store: EventStore) -> None:
    await store.append([])
    assert store.statistics().commits == 0


def test_bad_rows_fail_in_the_caller() -> None:
    with pytest.raises(TypeError):
        StoredEvent(author="A", seq=1, data=b"", signature=b"")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seq"):
        StoredEvent(author=A, seq=2**63, data=b"", signature=b"")
    with pytest.raises(ValueError, match="seq"):
        StoredEvent(author=A, seq=-1, data=b"", signature=b"")


async def test_append_rejects_other_types(store: EventStore) -> None:
    with pytest.raises(TypeError, match="StoredEvent"):
        await store.append([(A, 1, b"", b"")])  # type: ignore[list-item]


async def test_a_closed_store_says_so(db: Path) -> None:
    async with EventStore.open(db) as s:
        pass
    s.close()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        await s.append([ev(A, 1)])
    with pytest.raises(trio.ClosedResourceError):
        s.count()
    with pytest.raises(trio.ClosedResourceError):
        await s.range_async(A, 0, 1)


# ---------------------------------------------------------------- group commit


async def test_concurrent_appends_are_group_committed(store: EventStore) -> None:
    n = 256
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(store.append, [ev(i.to_bytes(32, "big"), 1)])
    stats = store.statistics()
    assert store.count() == n
    assert (stats.appends, stats.events_submitted, stats.events_written) == (n, n, n)
    assert stats.commits <= n // 16, stats
    assert stats.largest_commit >= n // 2, stats
    assert stats.pending == 0


class _Gate:
    """Holds the writer thread inside its transaction until the test opens it."""

    def __init__(self, store: EventStore) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real = store._write

        def gated(batch: list) -> int:  # type: ignore[type-arg]
            self.entered.set()
            assert self.release.wait(10)
            return real(batch)

        store._write = gated  # type: ignore[method-assign]


async def test_appends_arriving_during_a_commit_share_the_next_one(store: EventStore
                                                                   ) -> None:
    gate = _Gate(store)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.append, [ev(A, 1)])
            await trio.to_thread.run_sync(gate.entered.wait)
            for i in range(2, 12):
                nursery.start_soon(store.append, [ev(A, i)])
            await trio.testing.wait_all_tasks_blocked()
            assert store.statistics().pending == 10
            gate.release.set()
    stats = store.statistics()
    assert (stats.commits, stats.largest_commit, stats.events_written) == (2, 10, 11)
    assert sorted(r.seq for r in store.load_all()) == list(range(1, 12))


async def test_a_caller_cancelled_while_queued_still_commits_before_it_returns(
        store: EventStore) -> None:
    # Withdrawing a queued append would leave a hole whenever the caller's next
    # event was queued behind it; so it is committed, and the cancel comes after.
    gate = _Gate(store)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.append, [ev(A, 1)])
            await trio.to_thread.run_sync(gate.entered.wait)

            async def release_once_all_wait() -> None:
                await trio.testing.wait_all_tasks_blocked()
                assert store.statistics().pending == 2  # C and B, queued in that order
                gate.release.set()

            with trio.CancelScope() as scope:
                nursery.start_soon(store.append, [ev(C, 1)])
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(release_once_all_wait)
                scope.cancel()
                await store.append([ev(B, 1)])  # queued, then cancelled: still committed
                assert store.count() == 3
                await trio.lowlevel.checkpoint()  # where the cancel is delivered
            assert scope.cancelled_caught
    assert [r.author for r in store.load_all()] == [A, C, B]


@pytest.mark.parametrize("others", [0, 1, 3])
async def test_a_leader_cancelled_before_its_turn_hands_the_batch_on(
        store: EventStore, others: int) -> None:
    gate = _Gate(store)
    b_scope = trio.CancelScope()

    async def first() -> None:
        await store.append([ev(A, 1)])
        # Runs before the woken waiters: B is cancelled after being woken, just
        # before it would start the next transaction (if it runs before the others;
        # trio picks the order, and either way nothing may be lost or stuck).
        b_scope.cancel()

    async def second() -> None:
        with b_scope:
            await store.append([ev(B, 1)])

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await trio.to_thread.run_sync(gate.entered.wait)
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(others):
                nursery.start_soon(store.append, [ev(C, i + 1)])
            await trio.testing.wait_all_tasks_blocked()
            gate.release.set()
    rows = list(store.load_all())
    # Neither the others' events nor B's are lost with B's turn: B's append, once
    # called, is committed whatever happens to its caller.
    assert rows[0] == ev(A, 1)
    assert sorted(r.seq for r in rows if r.author == C) == list(range(1, others + 1))
    assert [r for r in rows if r.author == B] == [ev(B, 1)]
    assert len(rows) == 2 + others
    assert store.statistics().pending == 0


def _fail_inserts_of_seq(store: EventStore, seq: int) -> None:
    """Make SQLite itself fail the transaction that inserts ``seq``: the store's own
    rollback path runs, as on a full disk or an I/O error."""
    store._writer.execute(
        f"CREATE TEMP TRIGGER fail_seq BEFORE INSERT ON main.events WHEN NEW.seq = {seq}"
        " BEGIN SELECT RAISE(ABORT, 'disk I/O error (injected)'); END")


async def test_a_failed_transaction_fails_every_caller_in_it_and_behind_it(
        store: EventStore) -> None:
    gate = _Gate(store)
    errors: list[StoreError] = []

    async def append(rows: list[StoredEvent]) -> None:
        try:
            await store.append(rows)
        except StoreError as exc:
            errors.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(append, [ev(A, 1)])
            await trio.to_thread.run_sync(gate.entered.wait)
            # Queued while A commits: B and C share the next transaction, which fails.
            _fail_inserts_of_seq(store, 99)
            nursery.start_soon(append, [ev(B, 1)])
            nursery.start_soon(append, [ev(C, 99)])
            await trio.testing.wait_all_tasks_blocked()
            gate.release.set()
    assert len(errors) == 2 and all(isinstance(e, StoreUnavailable) for e in errors)
    assert all(str(store.path) in str(e) and "disk I/O error (injected)" in str(e)
               for e in errors)
    assert [r.author for r in store.load_all()] == [A]
    failure = store.failure
    assert failure is not None and "disk I/O error (injected)" in failure.reason
    # Nothing is written after a failure until resume(): a later event written now
    # could stand on disk without an earlier one that failed.
    with pytest.raises(StoreUnavailable, match="until resume"):
        await store.append([ev(A, 2)])
    assert store.count() == 1
    store.resume()
    await store.append([ev(B, 1)])
    assert store.count() == 2 and store.failure is None
    assert not store._writer.in_transaction  # the failed transaction was rolled back


# ---------------------------------------------------------------- model-based

AUTHORS = (A, B, C)
rows_strategy = st.builds(
    StoredEvent,
    author=st.sampled_from(AUTHORS),
    seq=st.integers(min_value=1, max_value=4),
    data=st.sampled_from([b"x", b"y", b"z" * 300]),
    signature=st.sampled_from([b"s" * 64, b"t" * 64]),
)
batches_strategy = st.lists(st.lists(rows_strategy, max_size=6), max_size=8)


def _model(batches: list[list[StoredEvent]]) -> dict[tuple[bytes, int], StoredEvent]:
    """What the store must hold: the first row written for each slot, in first order."""
    model: dict[tuple[bytes, int], StoredEvent] = {}
    for batch in batches:
        for row in batch:
            model.setdefault((row.author, row.seq), row)
    return model


def _assert_matches(store: EventStore, expected: list[StoredEvent]) -> None:
    assert list(store.load_all(page_size=3)) == expected
    assert store.count() == len(expected)
    heads: dict[bytes, int] = {}
    for row in expected:
        heads[row.author] = max(heads.get(row.author, 0), row.seq)
    assert store.heads() == heads
    for author in AUTHORS:
        mine = sorted((r for r in expected if r.author == author), key=lambda r: r.seq)
        assert store.range(author, 0, 100) == mine
        assert store.range(author, 2, 1) == [r for r in mine if r.seq > 2][:1]


@settings(max_examples=40, deadline=None)
@given(batches=batches_strategy)
async def test_sequential_appends_match_the_first_written_model(
        batches: list[list[StoredEvent]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.sqlite3"
        async with EventStore.open(path) as s:
            for batch in batches:
                await s.append(batch)
            expected = list(_model(batches).values())
            _assert_matches(s, expected)
        with closing(EventStore.open(path)) as reopened:
            _assert_matches(reopened, expected)


@settings(max_examples=25, deadline=None)
@given(batches=batches_strategy)
async def test_concurrent_appends_keep_one_offered_row_per_slot(
        batches: list[list[StoredEvent]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with EventStore.open(Path(tmp) / "events.sqlite3") as s:
            async with trio.open_nursery() as nursery:
                for batch in batches:
                    nursery.start_soon(s.append, batch)
            stored = list(s.load_all())
    offered: dict[tuple[bytes, int], list[StoredEvent]] = {}
    for row in (r for batch in batches for r in batch):
        offered.setdefault((row.author, row.seq), []).append(row)
    assert sorted((r.author, r.seq) for r in stored) == sorted(offered)
    for row in stored:
        assert row in offered[(row.author, row.seq)]
