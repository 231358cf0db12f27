"""Ed25519 checks in worker processes, for the bulk of an initial sync.

Why processes and not threads: PyNaCl releases the GIL for the ~60 µs of one
check, but takes it back after every check; while the trio thread is busy decoding
and applying the previous page, a worker thread waits up to the interpreter's switch
interval (5 ms) for it, so checks crawl exactly when they should overlap that work.
A worker process (:mod:`peer.net.verify_worker`) has its own interpreter: the pages
ahead are verified at full speed on the other cores while this one applies.

A :class:`VerifyPool` (:func:`open_verify_pool`) belongs to one task (a sync pull):
its processes start at the first :meth:`VerifyPool.check`, one reader task per
process runs in the pool's own nursery, and all of them end with the block (stdin
closed; killed if they do not go within a second). A worker that dies
or answers nonsense is dropped and its checks count as not done (False): the caller
then lets the ledger check those events itself, so a broken pool costs speed, never
a forged event.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio

from peer.net.verify_worker import ANSWER_HEADER, CHECK_HEADER, JOB_HEADER

__all__ = ["WORKER_NICE", "VerifyPool", "encode_job", "open_verify_pool"]

#: The checks (key, signed bytes, signature) a job carries.
Check = tuple[bytes, bytes, bytes]

#: How much lower the workers' priority is than the node's (``nice`` steps). The
#: node's trio thread decodes, applies and persists every page in order: it is the
#: pipeline's critical path, and with as many workers as cores the scheduler would
#: otherwise give it only its fair share of a core (2/3 of one on 2 cores). Niced
#: workers still take every cycle it leaves idle.
WORKER_NICE: Final = 10
_EXIT_WAIT: Final = 1.0
_PIPE_SIZE: Final = 1 << 20  # the default /proc/sys/fs/pipe-max-size
_MAX_SHORT: Final = 0xFFFF
_MAX_LONG: Final = 0xFFFFFFFF
_READ_SIZE: Final = 65536
# The directory holding the ``peer`` package, so the child imports this very code
# whatever the current directory is.
_IMPORT_ROOT: Final = str(Path(__file__).resolve().parent.parent)


def encode_job(checks: Sequence[Check]) -> tuple[bytes, list[int]]:
    """A job for :mod:`peer.net.verify_worker` and the indexes of ``checks`` it carries.

    Checks that cannot be framed (not bytes, or too long) are left out: they count
    as failed.
    """
    parts: list[bytes] = []
    sent: list[int] = []
    pack = CHECK_HEADER.pack
    for index, (key, data, signature) in enumerate(checks):
        if (type(key) is not bytes or type(data) is not bytes or type(signature) is not bytes
                or len(key) > _MAX_SHORT or len(signature) > _MAX_SHORT
                or len(data) > _MAX_LONG):
            continue
        parts += (pack(len(data), len(key), len(signature)), key, data, signature)
        sent.append(index)
    body = b"".join(parts)
    return JOB_HEADER.pack(len(sent), len(body)) + body, sent


@dataclass(eq=False, slots=True)
class _Job:
    count: int
    answer: bytes | None = None
    done: trio.Event = field(default_factory=trio.Event)


class _Worker:
    """One worker process. Jobs are written back to back (the worker always has the
    next one queued in its pipe, also while the trio thread is busy elsewhere) and a
    reader task matches the answers, which come in order, to the waiting jobs."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.pending: collections.deque[_Job] = collections.deque()
        self.queued_checks = 0
        self.broken = False
        self._send_lock = trio.Lock()

    async def submit(self, job: bytes, count: int) -> bytes | None:
        """The ``count`` result bytes of ``job``, or None if the worker failed."""
        stdin = self.process.stdin
        assert stdin is not None
        entry = _Job(count)
        async with self._send_lock:
            if self.broken:
                return None
            self.pending.append(entry)
            self.queued_checks += count
            try:
                await stdin.send_all(job)
            except BaseException:
                # Cancelled or failed mid-write: the stream is out of step for good.
                self.fail()
                if not isinstance(sys.exc_info()[1], Exception):
                    raise
        await entry.done.wait()
        return entry.answer

    def fail(self) -> None:
        """Stop using this worker: every waiting job gets None."""
        self.broken = True
        if self.process.returncode is None:
            self.process.kill()
        while self.pending:
            entry = self.pending.popleft()
            entry.done.set()
        self.queued_checks = 0

    async def read_answers(self) -> None:
        """Hand each answer to the oldest job (a task of the pool's nursery)."""
        stdout = self.process.stdout
        assert stdout is not None
        buffer = bytearray()
        try:
            while True:
                chunk = await stdout.receive_some(_READ_SIZE)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= ANSWER_HEADER.size:
                    (count,) = ANSWER_HEADER.unpack_from(buffer)
                    if not self.pending or self.pending[0].count != count:
                        return  # an answer nobody asked for: out of step (finally fails)
                    if len(buffer) < ANSWER_HEADER.size + count:
                        break
                    entry = self.pending.popleft()
                    self.queued_checks -= count
                    entry.answer = bytes(buffer[ANSWER_HEADER.size:ANSWER_HEADER.size + count])
                    del buffer[:ANSWER_HEADER.size + count]
                    entry.done.set()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.fail()


class VerifyPool:
    """Worker processes that check Ed25519 signatures; see the module docstring.

    Open it with :func:`open_verify_pool`. Concurrent :meth:`check` calls share the
    workers; each job goes to the worker with the least work queued.
    """

    def __init__(self, nursery: trio.Nursery, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else max(1, os.cpu_count() or 1)
        self._nursery = nursery
        self._all: list[_Worker] = []
        self._started = False
        # Set once _start has returned: a check that arrives while the first one is
        # still starting the processes must wait for them, not find none.
        self._start_done = trio.Event()
        self._closed = False

    async def aclose(self) -> None:
        """Let the workers go: stdin closed, then killed if they linger. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            for worker in self._all:
                stdin = worker.process.stdin
                if stdin is not None:
                    with contextlib.suppress(OSError, trio.BrokenResourceError,
                                             trio.ClosedResourceError):
                        await stdin.aclose()
            with trio.move_on_after(_EXIT_WAIT):
                for worker in self._all:
                    await worker.process.wait()
            for worker in self._all:
                worker.fail()
                await worker.process.wait()

    async def _start(self) -> None:
        self._started = True
        try:
            await self._spawn_workers()
        finally:
            self._start_done.set()

    async def _spawn_workers(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_IMPORT_ROOT, env.get("PYTHONPATH", "")) if p)
        for _ in range(self.workers):
            try:
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "peer.net.verify_worker", str(WORKER_NICE)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            except OSError:
                break  # fewer workers (or none: then every check reports not done)
            _widen_pipe(process.stdin)
            worker = _Worker(process)
            self._all.append(worker)
            self._nursery.start_soon(worker.read_answers)

    async def check(self, checks: Sequence[Check]) -> list[bool]:
        """Per check, whether it holds; False also when it could not be done."""
        if self._closed:
            raise trio.ClosedResourceError("the verify pool is closed")
        if not self._started:
            await self._start()
        else:
            await self._start_done.wait()
        results = [False] * len(checks)
        job, sent = encode_job(checks)
        alive = [w for w in self._all if not w.broken]
        if not sent or not alive:
            return results
        worker = min(alive, key=lambda w: w.queued_checks)
        answer = await worker.submit(job, len(sent))
        if answer is not None:
            if len(sent) == len(results):  # the usual case: every check was framed
                return [ok == 1 for ok in answer]
            for index, ok in zip(sent, answer, strict=True):
                results[index] = ok == 1
        return results


def _widen_pipe(stream: trio.abc.SendStream | None) -> None:
    """Let a worker's stdin hold several queued jobs (Linux; elsewhere a no-op).

    With the default 64 KiB a job of ~128 events fills the pipe while the worker is
    still busy with the previous one, and the trio thread is woken again and again
    to write the rest.
    """
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if not isinstance(stream, trio.lowlevel.FdStream) or set_size is None:
        return
    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
        fcntl.fcntl(stream.fileno(), set_size, _PIPE_SIZE)


@asynccontextmanager
async def open_verify_pool(workers: int | None = None) -> AsyncIterator[VerifyPool]:
    """A :class:`VerifyPool` whose processes (started on first use) end with the block.

    Args:
        workers: How many processes; default: one per core.
    """
    async with trio.open_nursery() as nursery:
        pool = VerifyPool(nursery, workers)
        try:
            yield pool
        finally:
            await pool.aclose()
