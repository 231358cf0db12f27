"""Benchmark of peer.storage.store: group-committed appends and the rebuild read.

``python -m bench.bench_store`` prints one JSON object; ``python -m bench`` runs it
with the others. Figures:

- ``append``: for 1, 16 and 256 concurrent writers, each appending single ~250-byte
  events in a loop for a fixed time: events per second, transactions (fsyncs) per
  second and the mean events per transaction. Every append is durable
  (WAL, ``synchronous=FULL``) before the next one of that writer starts.
- ``rebuild``: a store of 100,000 events is reopened (header, ``quick_check``,
  schema) and read back with ``load_all``; the ledger's apply time is not included.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import trio

from peer.storage.rows import StoredEvent
from peer.storage.store import EventStore

WRITERS = (1, 16, 256)
SECONDS_PER_SETTING = 2.0
REBUILD_EVENTS = 100_000
AUTHOR_BYTES = 32
DATA_BYTES = 186  # + a 64-byte signature: ~250 bytes per event, like a signed Accept
SIGNATURE_BYTES = 64


def _event(author: bytes, seq: int) -> StoredEvent:
    data = seq.to_bytes(8, "big") * (DATA_BYTES // 8) + b"\x00" * (DATA_BYTES % 8)
    return StoredEvent(author=author, seq=seq, data=data, signature=b"\x5a" * SIGNATURE_BYTES)


async def _appends(path: Path, writers: int, seconds: float) -> dict[str, float]:
    """``writers`` tasks, each appending one event at a time until the time is up."""
    done = 0
    async with EventStore.open(path) as store:
        deadline = trio.current_time() + seconds

        async def writer(index: int) -> None:
            nonlocal done
            author = index.to_bytes(AUTHOR_BYTES, "big")
            seq = 0
            while trio.current_time() < deadline:
                seq += 1
                await store.append([_event(author, seq)])
                done += 1

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for index in range(writers):
                nursery.start_soon(writer, index)
        elapsed = time.perf_counter() - started
        stats = store.statistics()
    return {
        "writers": writers,
        "events": done,
        "seconds": round(elapsed, 3),
        "events_per_s": round(done / elapsed),
        "commits_per_s": round(stats.commits / elapsed),
        "events_per_commit": round(stats.events_submitted / max(stats.commits, 1), 1),
    }


async def _fill(path: Path, events: int, authors: int = 50) -> None:
    """Write ``events`` events quickly (large batches); only the read side is timed."""
    async with EventStore.open(path) as store:
        batch: list[StoredEvent] = []
        for i in range(events):
            batch.append(_event(((i % authors) + 1).to_bytes(AUTHOR_BYTES, "big"),
                                i // authors + 1))
            if len(batch) == 5000:
                await store.append(batch)
                batch = []
        if batch:
            await store.append(batch)


def _rebuild(path: Path, events: int) -> dict[str, float]:
    trio.run(_fill, path, events)
    started = time.perf_counter()
    store = EventStore.open(path)
    opened = time.perf_counter()
    try:
        loaded = sum(1 for _ in store.load_all())
        read = time.perf_counter()
        heads = store.heads()
        heads_done = time.perf_counter()
    finally:
        store.close()
    assert loaded == events, (loaded, events)
    return {
        "events": loaded,
        "db_bytes": os.path.getsize(path),
        "open_s": round(opened - started, 3),
        "load_all_s": round(read - opened, 3),
        "load_events_per_s": round(loaded / (read - opened)),
        "heads_s": round(heads_done - read, 4),
        "authors": len(heads),
    }


def run(seconds: float = SECONDS_PER_SETTING, rebuild_events: int = REBUILD_EVENTS) -> dict[
        str, object]:
    """Run every setting in a fresh temporary data dir and return the figures."""
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        base = Path(tmp)
        append = [trio.run(_appends, base / f"append-{n}" / "events.sqlite3", n, seconds)
                  for n in WRITERS]
        rebuild = _rebuild(base / "rebuild" / "events.sqlite3", rebuild_events)
    return {"append": append, "rebuild": rebuild}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
