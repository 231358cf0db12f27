"""peer.storage.store: the schema version table, migrations, and refusing bad arguments."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import trio

from peer.storage import db_file
from peer.storage.rows import StoredEvent
from peer.storage.store import EventStore
from peer.storage.store_errors import StoreCorrupt, StoreError


def _version_of(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        version: int = conn.execute("SELECT version FROM schema_version").fetchone()[0]
        return version


def _an_event(seq: int = 1) -> StoredEvent:
    return StoredEvent(author=b"\x01" * 32, seq=seq, data=b"d", signature=bytes(64))


@pytest.mark.parametrize(("damage", "why"), [
    ("DROP TABLE schema_version", "the schema_version table is missing"),
    ("DELETE FROM schema_version", "the schema_version table has no valid row"),
    ("UPDATE schema_version SET version = 'one'", "the schema_version table has no valid row"),
])
def test_a_store_without_a_readable_schema_version_is_refused(
        tmp_path: Path, damage: str, why: str) -> None:
    path = tmp_path / "events.sqlite3"
    EventStore.open(path).close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(damage)
    before = path.read_bytes()
    with pytest.raises(StoreCorrupt, match=why):
        EventStore.open(path)
    assert path.read_bytes() == before


def test_an_older_store_is_migrated_one_version_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.sqlite3"

    async def write_one() -> None:
        async with EventStore.open(path) as store:
            await store.append([_an_event()])

    trio.run(write_one)
    monkeypatch.setattr(db_file, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(db_file, "_MIGRATIONS", {
        2: ("CREATE TABLE added_in_2 (x INTEGER)",),
        3: ("ALTER TABLE added_in_2 ADD COLUMN y TEXT",),
    })
    with closing(EventStore.open(path)) as store:
        assert store.count() == 1  # the events came through
    assert _version_of(path) == 3
    with closing(sqlite3.connect(path)) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(added_in_2)")]
    assert columns == ["x", "y"]


def test_a_failed_migration_leaves_the_store_at_its_last_good_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.sqlite3"
    EventStore.open(path).close()
    monkeypatch.setattr(db_file, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(db_file, "_MIGRATIONS", {
        2: ("CREATE TABLE added_in_2 (x INTEGER)",),
        3: ("CREATE TABLE half_made (x INTEGER)", "THIS IS NOT SQL"),
    })
    with pytest.raises(StoreError, match=str(path)):
        EventStore.open(path)
    assert _version_of(path) == 2  # 2 committed; 3 rolled back whole
    with closing(sqlite3.connect(path)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "added_in_2" in tables and "half_made" not in tables


def test_bad_arguments_are_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="seq must be an int"):
        StoredEvent(author=b"a", seq=True, data=b"d", signature=b"s")
    with pytest.raises(TypeError, match="data must be bytes"):
        StoredEvent(author=b"a", seq=1, data="d", signature=b"s")  # type: ignore[arg-type]

    async def misuse(store: EventStore) -> None:
        with pytest.raises(TypeError, match="str key and a bytes value"):
            await store.set_meta("key", "not bytes")  # type: ignore[arg-type]

    with closing(EventStore.open(tmp_path / "events.sqlite3")) as store:
        with pytest.raises(ValueError, match="page_size must be positive"):
            list(store.load_all(page_size=0))
        trio.run(misuse, store)
