"""The child side of :mod:`peer.net.verify_pool`: Ed25519 checks in a process of their own.

``python -m peer.net.verify_worker`` reads jobs from stdin and writes answers to stdout
until stdin closes. It imports nothing of the node but :func:`peer.core.identity.verify`,
so it starts in a fraction of a second.

Framing (all integers big-endian):

- job: ``count: u32, size: u32`` then ``size`` bytes holding ``count`` checks, each
  ``key_len: u16, data_len: u32, sig_len: u16`` followed by the key, data and
  signature bytes;
- answer: ``count: u32`` then ``count`` bytes, 1 where the check holds, else 0.

A job that does not parse ends the worker (the pool then treats its checks as not
done, and the ledger checks those events itself).
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from typing import BinaryIO, Final

from peer.core.identity import verify

__all__ = ["CHECK_HEADER", "JOB_HEADER", "main", "serve"]

JOB_HEADER: Final = struct.Struct(">II")
CHECK_HEADER: Final = struct.Struct(">IHH")  # data_len, key_len, sig_len
ANSWER_HEADER: Final = struct.Struct(">I")


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def answer(job: bytes, count: int) -> bytes:
    """The answer bytes (header included) for one job body of ``count`` checks.

    Raises:
        ValueError: The body is not ``count`` well-framed checks.
    """
    results = bytearray(count)
    pos = 0
    unpack = CHECK_HEADER.unpack_from
    size = CHECK_HEADER.size
    for index in range(count):
        data_len, key_len, sig_len = unpack(job, pos)
        pos += size
        key = job[pos:pos + key_len]
        pos += key_len
        data = job[pos:pos + data_len]
        pos += data_len
        signature = job[pos:pos + sig_len]
        pos += sig_len
        if pos > len(job):
            raise ValueError("check runs past the end of the job")
        results[index] = verify(key, data, signature)
    if pos != len(job):
        raise ValueError("trailing bytes after the last check")
    return ANSWER_HEADER.pack(count) + bytes(results)


def serve(inp: BinaryIO, out: BinaryIO) -> int:
    """Answer jobs from ``inp`` on ``out`` until ``inp`` ends; the exit code."""
    while True:
        head = _read_exactly(inp, JOB_HEADER.size)
        if head is None:
            return 0
        count, size = JOB_HEADER.unpack(head)
        job = _read_exactly(inp, size)
        if job is None:
            return 1
        try:
            reply = answer(job, count)
        except (ValueError, struct.error):
            return 1
        out.write(reply)
        out.flush()


def main(argv: list[str]) -> int:
    """``python -m peer.net.verify_worker [NICE]``: lower this process's priority by NICE
    (see :data:`peer.net.verify_pool.WORKER_NICE`), then :func:`serve` stdin and stdout."""
    if len(argv) > 1:
        # If it fails: full priority, slower for the node's own loop, never wrong.
        with contextlib.suppress(ValueError, OSError):
            os.nice(int(argv[1]))
    return serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
