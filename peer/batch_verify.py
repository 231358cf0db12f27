"""Signature checks for a batch of events, spread over worker threads.

Ed25519 verification dominates applying a batch (a sync page, a busy push), and
PyNaCl releases the GIL while it verifies, so the checks of one batch run on as
many threads as the machine has cores; the ledger then applies the batch with
``verified=True`` for the events that passed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

import trio

from peer.gen.auction.v1 import SignedEvent
from peer.ledger import signatures_valid

__all__ = ["PARALLEL_MIN", "preverify"]

#: Below this many events the thread hand-offs cost more than they save.
PARALLEL_MIN: Final = 32
_WORKERS: Final = max(1, min(4, os.cpu_count() or 1))


def _check(events: Sequence[SignedEvent]) -> list[bool]:
    return [signatures_valid(signed) for signed in events]


async def preverify(events: Sequence[SignedEvent]) -> list[bool] | None:
    """Which events carry valid signatures, or None for a batch too small to bother.

    A False entry only means "let the ledger check it": applying it unverified
    gives the precise rejection.
    """
    if len(events) < PARALLEL_MIN or _WORKERS == 1:
        return None
    size = -(-len(events) // _WORKERS)
    chunks = [events[i:i + size] for i in range(0, len(events), size)]
    results: list[list[bool]] = [[] for _ in chunks]

    async def run(index: int) -> None:
        results[index] = await trio.to_thread.run_sync(_check, chunks[index])

    async with trio.open_nursery() as nursery:
        for index in range(len(chunks)):
            nursery.start_soon(run, index)
    return [ok for chunk in results for ok in chunk]
