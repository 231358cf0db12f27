"""peer.storage.store refuses damaged files loudly, names them, and never modifies them."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
import trio

from peer.storage.rows import StoredEvent
from peer.storage.store import EventStore
from peer.storage.store_errors import StoreCorrupt

PAGE = 4096  # SQLite's default page size, which the store keeps


def _data(i: int) -> bytes:
    return random.Random(i).randbytes(186)


def _good_store(path: Path, events: int = 600) -> bytes:
    """A healthy store of several dozen pages; returns its bytes."""

    async def fill() -> None:
        async with EventStore.open(path) as store:
            await store.append([StoredEvent(author=bytes([i % 5]) * 32, seq=i + 1,
                                            data=_data(i), signature=bytes(64))
                                for i in range(events)])

    trio.run(fill)
    return path.read_bytes()


def _damage_page(page: int) -> Callable[[bytes], bytes]:
    def damage(good: bytes) -> bytes:
        out = bytearray(good)
        out[PAGE * (page - 1):PAGE * page] = random.Random(page).randbytes(PAGE)
        return bytes(out)
    return damage


def _scribble_cells(good: bytes) -> bytes:
    # A few bytes inside a leaf page, as a bad sector or a stray write would leave.
    out = bytearray(good)
    start = PAGE * (len(good) // PAGE // 2) + 300
    out[start:start + 40] = b"\xff" * 40
    return bytes(out)


def _flip_a_data_byte(good: bytes) -> bytes:
    # One bit inside one event's data: structurally the file is fine, so only the
    # row checksum can see it.
    out = bytearray(good)
    at = good.index(_data(300))
    assert good.find(_data(300), at + 1) == -1
    out[at + 93] ^= 0x01
    return bytes(out)


CASES: dict[str, Callable[[bytes], bytes]] = {
    "garbage": lambda good: random.Random(1).randbytes(len(good)),
    "text file": lambda good: b"name = Client#1\n" * 100,
    "empty file": lambda good: b"",
    "header only": lambda good: good[:60],
    "torn mid-page": lambda good: good[:len(good) // 2 + 1234],
    "truncated at a page boundary": lambda good: good[:PAGE * (len(good) // PAGE // 2)],
    "last page missing": lambda good: good[:-PAGE],
    "damaged btree root": _damage_page(2),
    "damaged middle page": _damage_page(10),
    "damaged last page": lambda good: _damage_page(len(good) // PAGE)(good),
    "scribbled cells": _scribble_cells,
    "one bit flipped in a row": _flip_a_data_byte,
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_file_raises_store_corrupt_naming_it_and_is_left_as_is(
        tmp_path: Path, case: str) -> None:
    path = tmp_path / "events.sqlite3"
    bad = CASES[case](_good_store(path))
    path.write_bytes(bad)
    with pytest.raises(StoreCorrupt) as info:
        # Damage to the structure fails at open; damage inside a row's bytes (which
        # SQLite cannot see) fails that row's checksum when the ledger is rebuilt.
        _open_and_load(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == bad
    # Not even side files are left next to a file that was refused.
    assert [p.name for p in tmp_path.iterdir()] == ["events.sqlite3"]


def _open_and_load(path: Path) -> None:
    with closing(EventStore.open(path)) as store:
        for _ in store.load_all():
            pass


def test_damage_inside_a_row_is_caught_by_range_too(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    bad = _flip_a_data_byte(_good_store(path))
    path.write_bytes(bad)
    with closing(EventStore.open(path)) as store, pytest.raises(StoreCorrupt, match="checksum"):
        for author in range(5):
            store.range(bytes([author]) * 32, 0, 1000)


def test_damage_inside_a_row_is_caught_by_a_sync_page_read(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    bad = _flip_a_data_byte(_good_store(path))
    path.write_bytes(bad)

    async def read_all(store: EventStore) -> None:
        for author in range(5):
            await store.range_raw_async(bytes([author]) * 32, 0, 1000)

    with closing(EventStore.open(path)) as store, pytest.raises(StoreCorrupt, match="checksum"):
        trio.run(read_all, store)


def test_a_row_whose_blob_became_another_type_is_unreadable(tmp_path: Path) -> None:
    # What a damaged record header can do, which the row checksum never gets to see.
    path = tmp_path / "events.sqlite3"
    _good_store(path, events=3)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE events SET data = 'text, not a blob' WHERE seq = 2")
    with closing(EventStore.open(path)) as store:
        with pytest.raises(StoreCorrupt, match="unreadable"):
            store.range(bytes([1]) * 32, 0, 10)
        with pytest.raises(StoreCorrupt, match="unreadable"):
            trio.run(store.range_raw_async, bytes([1]) * 32, 0, 10)
        assert [r.seq for r in store.range(bytes([0]) * 32, 0, 10)] == [1]


def _edit_schema(path: Path, old: str, new: str) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE name = 'events'",
                     (old, new))


def test_a_file_that_fails_the_integrity_check_is_refused_with_its_findings(
        tmp_path: Path) -> None:
    # Structurally readable, but a row breaks the table's own rules: a NULL in a
    # NOT NULL column (written while the schema was edited to allow it). SQLite opens
    # it happily; only PRAGMA quick_check reports it.
    path = tmp_path / "events.sqlite3"
    _good_store(path, events=3)
    _edit_schema(path, "data BLOB NOT NULL", "data BLOB")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE events SET data = NULL WHERE seq = 2")
    _edit_schema(path, "data BLOB,", "data BLOB NOT NULL,")
    bad = path.read_bytes()
    with pytest.raises(StoreCorrupt) as info:
        EventStore.open(path)
    assert str(info.value) == (f"{path}: the integrity check failed: NULL value in"
                               f" events.data")
    assert path.read_bytes() == bad
    assert [p.name for p in tmp_path.iterdir()] == ["events.sqlite3"]


def test_another_programs_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE events (x)")
    before = path.read_bytes()
    with pytest.raises(StoreCorrupt, match="not an auction-peer event store"):
        EventStore.open(path)
    assert path.read_bytes() == before


def test_a_write_ahead_log_without_its_database_is_not_discarded(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    wal = tmp_path / "events.sqlite3-wal"
    wal.write_bytes(b"\x37\x7f\x06\x82" + bytes(100))
    with pytest.raises(StoreCorrupt, match="missing"):
        EventStore.open(path)
    assert not path.exists()
    assert wal.read_bytes() == b"\x37\x7f\x06\x82" + bytes(100)


def test_the_check_passes_a_healthy_store(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    _good_store(path)
    with closing(EventStore.open(path)) as store:
        assert store.count() == 600
