"""peer.storage.store: every acknowledged append survives SIGKILL of the writing process.

The child runs several concurrent writers (so acks come out of group commits) and
prints ``acked <writer> <seq>`` right after each ``append`` returns. The test kills
it with SIGKILL as soon as it has read enough acks, then reopens the store: every
acked event must be there, whole. (SIGKILL leaves the OS page cache intact, so this
proves "nothing is acked before its commit"; surviving power loss rests on
``synchronous=FULL``, which tests/unit/test_store.py checks is set.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import trio

from peer.storage.rows import StoredEvent
from peer.storage.store import EventStore

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 8
ACKS_BEFORE_KILL = 300

CHILD = """
import sys
from pathlib import Path

import trio

from peer.storage.store import EventStore
from peer.storage.rows import StoredEvent


def event(writer: int, seq: int) -> StoredEvent:
    return StoredEvent(author=bytes([writer]) * 32, seq=seq,
                       data=f"{writer}:{seq}".encode() * 20, signature=bytes(64))


async def writer(store: EventStore, index: int) -> None:
    seq = 0
    while True:
        seq += 1
        await store.append([event(index, seq)])
        print("acked", index, seq, flush=True)


async def main() -> None:
    async with EventStore.open(Path(sys.argv[1])) as store, trio.open_nursery() as nursery:
        for index in range(int(sys.argv[2])):
            nursery.start_soon(writer, store, index)


trio.run(main)
"""


def expected(writer: int, seq: int) -> StoredEvent:
    return StoredEvent(author=bytes([writer]) * 32, seq=seq,
                       data=f"{writer}:{seq}".encode() * 20, signature=bytes(64))


async def test_every_acked_event_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "node" / "events.sqlite3"
    acked: list[tuple[int, int]] = []
    buffer = b""
    with trio.fail_after(20):
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", CHILD, str(db), str(WRITERS)],
            stdout=subprocess.PIPE, cwd=ROOT)
        assert proc.stdout is not None
        try:
            async with proc.stdout:
                while len(acked) < ACKS_BEFORE_KILL:
                    chunk = await proc.stdout.receive_some()
                    assert chunk, f"child exited early with {await proc.wait()}"
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    acked += [_parse(line) for line in lines]
                proc.kill()  # SIGKILL: no cleanup, no close, mid-whatever it was doing
                # Acks written to the pipe before the kill count too.
                while chunk := await proc.stdout.receive_some():
                    buffer += chunk
        finally:
            proc.kill()
            assert await proc.wait() == -signal.SIGKILL
    *lines, _partial = buffer.split(b"\n")
    acked += [_parse(line) for line in lines]

    with closing(EventStore.open(db)) as store:
        stored = {(row.author, row.seq): row for row in store.load_all()}
        heads = store.heads()
    for writer, seq in acked:
        assert stored.get((bytes([writer]) * 32, seq)) == expected(writer, seq)
    # Nothing torn either: every stored row is whole, and each log has no gaps.
    assert all(row == expected(row.author[0], row.seq) for row in stored.values())
    assert len(stored) == sum(heads.values())


def _parse(line: bytes) -> tuple[int, int]:
    word, writer, seq = line.split()
    assert word == b"acked"
    return int(writer), int(seq)
