"""Events from peers on their way into the ledger: decoded once, checked on worker threads.

Ed25519 verification dominates applying a batch (a sync page, a busy push), and
PyNaCl releases the GIL while it verifies, so the checks of one batch run on as
many threads as the machine has cores; the ledger then applies the batch with
``verified=True`` for the events that passed.

An :class:`IncomingBatch` decodes every event once (:func:`peer.core.signed_events.decode_signed`)
and that one decoding serves the duplicate check, the signature checks and the
apply. Its checks can be started (:meth:`IncomingBatch.verify`, in a task of the
caller's nursery) well before the batch is applied (:meth:`IncomingBatch.verified`),
so a sync verifies the next page while the current one is applied and made durable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Final

import trio

from peer.core.ledger import Ledger
from peer.core.rules import Rejection
from peer.core.signed_events import (
    DecodedEvent,
    SignatureCheck,
    checks_pass,
    decode_signed,
    signature_checks,
)
from peer.gen.auction.v1 import SignedEvent
from peer.net.verify_pool import VerifyPool

__all__ = ["CHUNK", "PARALLEL_MIN", "POOL_CHUNK", "IncomingBatch", "preverify"]

#: Below this many events the thread hand-offs cost more than they save.
PARALLEL_MIN: Final = 32
#: Events per worker-thread job: small enough that the cores share a batch evenly
#: (and the first jobs of the next batch start early), large enough that the
#: hand-off (tens of microseconds) is noise next to ~64 Ed25519 checks.
CHUNK: Final = 64
#: Events per job for a worker process: a job costs the trio thread a task, a pipe
#: write and a wake-up, so fewer, larger ones (a sync page is ~4 of them); the
#: pages verified ahead keep every process busy all the same.
POOL_CHUNK: Final = 128
_WORKERS: Final = max(1, min(4, os.cpu_count() or 1))

# One limiter per trio run: every batch's jobs queue on it in order (trio's
# CapacityLimiter is fair), so pages being verified ahead do not slow the one
# that is waited for, and never more threads than cores are verifying.
_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("verify_limiter")


def _limiter() -> trio.CapacityLimiter:
    try:
        return _LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(_WORKERS)
        _LIMITER.set(limiter)
        return limiter


def _check(jobs: Sequence[list[SignatureCheck]]) -> list[bool]:
    return [checks_pass(checks) for checks in jobs]


async def preverify(events: Sequence[DecodedEvent], pool: VerifyPool | None = None
                    ) -> list[bool] | None:
    """Which events carry valid signatures, or None for a batch too small to bother.

    The checks run in ``pool``'s processes if one is given, else on worker threads.
    A False entry only means "let the ledger check it": applying it unverified
    gives the precise rejection.
    """
    if len(events) < PARALLEL_MIN or _WORKERS == 1:
        return None
    # Gathered here, on the trio thread: it needs the decoded bid (which the apply
    # reuses); the workers then do nothing but Ed25519.
    jobs = [signature_checks(event) for event in events]
    size = CHUNK if pool is None else POOL_CHUNK
    chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    results: list[list[bool]] = [[] for _ in chunks]
    limiter = _limiter()

    async def run(index: int) -> None:
        if pool is None:
            results[index] = await trio.to_thread.run_sync(_check, chunks[index],
                                                           limiter=limiter)
            return
        chunk = chunks[index]
        flat = [check for checks in chunk for check in checks]
        passed = await pool.check(flat)
        # An event passes if all of its (one or two) checks do.
        ok: list[bool] = []
        start = 0
        for checks in chunk:
            end = start + len(checks)
            ok.append(False not in passed[start:end])
            start = end
        results[index] = ok

    async with trio.open_nursery() as nursery:
        for index in range(len(chunks)):
            nursery.start_soon(run, index)
    return [ok for chunk in results for ok in chunk]


class IncomingBatch:
    """Events received from a peer, decoded once, with their signature checks.

    Build it with :meth:`prepare`; start :meth:`verify` in a task so that it overlaps
    other work (or skip that); then :meth:`verified` says which events may be applied
    with ``verified=True``.

    Attributes:
        events: The decoded events, in the order received, known ones left out.
        malformed: Why each event that could not be decoded was refused.
        known: The events left out because the ledger had applied them: the node
            acknowledges them only once they are durable (they may still be in
            flight, or be undone before the batch is committed).
    """

    def __init__(self, events: list[DecodedEvent], malformed: list[Rejection],
                 known: list[DecodedEvent] | None = None) -> None:
        self.events = events
        self.malformed = malformed
        self.known = known if known is not None else []
        self._results: list[bool] | None = None
        self._started = False
        self._done = trio.Event()

    @classmethod
    def prepare(cls, ledger: Ledger, received: Iterable[SignedEvent], *,
                verified: bool = False) -> IncomingBatch:
        """Decode ``received`` once and leave out what ``ledger`` has already applied.

        Several peers relay the same events: the known ones are dropped here, before
        anyone pays for their signatures. ``verified``: the caller has checked every
        signature of ``received`` itself (a bidder, the seller's Accept of its own
        bid: ``peer.bid_replies``), so none is checked again.
        """
        events: list[DecodedEvent] = []
        malformed: list[Rejection] = []
        known: list[DecodedEvent] = []
        for signed in received:
            decoded = decode_signed(signed)
            if isinstance(decoded, Rejection):
                malformed.append(decoded)
            elif ledger.is_applied(decoded):
                known.append(decoded)
            else:
                events.append(decoded)
        batch = cls(events, malformed, known)
        if verified:
            batch._started = True
            batch._results = [True] * len(events)
            batch._done.set()
        return batch

    async def verify(self, pool: VerifyPool | None = None) -> None:
        """Check the signatures (in ``pool``, else on worker threads), or wait for the
        check under way.

        Safe to call from several tasks: the first one checks, the others wait.
        """
        if self._started:
            await self._done.wait()
            return
        self._started = True
        try:
            self._results = await preverify(self.events, pool)
        finally:
            # Also when cancelled: the results stay None and the ledger checks inline.
            self._done.set()

    async def verified(self) -> list[bool] | None:
        """Per event, True if its signatures were checked and hold; None: none were.

        Runs :meth:`verify` if no task has started it, else waits for it.
        """
        await self.verify()
        return self._results
