"""batch_verify, verify_pool, verify_worker (peer.net): decode once, check everywhere.

Every path that says "verified" must have checked both signatures of an Accept
(the author's and the bidder's); a broken worker must cost speed, never a forgery.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys

import pytest
import trio

from peer.core.ledger import Ledger
from peer.core.rules import Rejection
from peer.core.signed_events import DecodedEvent, decode_signed, signature_checks
from peer.gen.auction.v1 import Accept, Event, Open, RejectCode, SignedBid, SignedEvent
from peer.net.batch_verify import PARALLEL_MIN, IncomingBatch, preverify
from peer.net.verify_pool import WORKER_NICE, encode_job, open_verify_pool
from peer.net.verify_worker import JOB_HEADER, answer, serve
from tests.unit.test_ledger import C1, C2, C3, Author, bid, raw_event, sha

BIDS = PARALLEL_MIN + 8


def _history() -> tuple[Author, list[SignedEvent]]:
    """An auction by C1 with ``BIDS`` accepted bids (enough for the parallel paths)."""
    seller = Author(C1)
    key = seller.open("Pic#1", "75")
    for n in range(BIDS):
        seller.accept(bid(C2 if n % 2 else C3, key, str(75 + n), nonce=n + 1))
    return seller, seller.log


def _forged_bid_event(seller: Author) -> SignedEvent:
    """The seller's next event: an Accept whose bidder signature is forged (the
    seller's own signature over the event is valid)."""
    key = next(iter(seller.ledger.auctions())).key
    real = bid(C2, key, "1000", nonce=999)
    forged = SignedBid(bid=real.bid, signature=bytes(64))
    return raw_event(C1, len(seller.log) + 1, sha(seller.log[-1]), accept=Accept(bid=forged))


def _decoded(events: list[SignedEvent]) -> list[DecodedEvent]:
    out = []
    for signed in events:
        decoded = decode_signed(signed)
        assert isinstance(decoded, DecodedEvent)
        out.append(decoded)
    return out


def test_signature_checks_cover_the_bidder_of_an_accept() -> None:
    _, log = _history()
    opened, accepted = _decoded(log[:2])
    assert len(signature_checks(opened)) == 1
    checks = signature_checks(accepted)
    assert [key for key, _, _ in checks] == [C1.node_id, C3.node_id]


def test_prepare_decodes_once_drops_known_and_collects_malformed() -> None:
    _, log = _history()
    ledger = Ledger()
    for signed in log[:5]:
        assert ledger.apply(signed).rejection is None
    junk = SignedEvent(event=b"\xff\xff", signature=b"")
    batch = IncomingBatch.prepare(ledger, [*log, junk])
    assert [d.signed for d in batch.events] == log[5:]
    assert len(batch.malformed) == 1 and batch.malformed[0].code == RejectCode.BAD_EVENT


def _forged_author_event(seller: Author) -> tuple[SignedEvent, SignedEvent]:
    """A new Open at the seller's next seq (not a duplicate of anything applied),
    signed by someone else; and the same bytes with the seller's own signature."""
    event = Event(author=C1.node_id, seq=len(seller.log) + 1, prev=sha(seller.log[-1]),
                  time_ms=1, author_name=C1.name,
                  open=Open(item="Forged", start_amount="1", currency="USDt"))
    data = bytes(event)
    return SignedEvent(event=data, signature=C2.sign(data)), \
        SignedEvent(event=data, signature=C1.sign(data))


@pytest.mark.parametrize("use_pool", [False, True])
async def test_forged_signatures_are_never_reported_valid(use_pool: bool) -> None:
    seller, log = _history()
    forged_bid = _forged_bid_event(seller)
    forged_author, genuine = _forged_author_event(seller)
    events = _decoded([*log, forged_bid, forged_author])
    if use_pool:
        async with open_verify_pool(2) as pool:
            results = await preverify(events, pool)
    else:
        results = await preverify(events)
    assert results == [True] * len(log) + [False, False]

    # And the ledger, given those results, refuses both forgeries for their signature.
    ledger = Ledger()
    for decoded, ok in zip(events, results, strict=True):
        result = ledger.apply_decoded(decoded, verified=ok)
        if decoded.signed in (forged_bid, forged_author):
            assert result.rejection is not None and not result.duplicate
            assert result.rejection.code == RejectCode.BAD_SIGNATURE
        else:
            assert result.rejection is None
    assert ledger.event_count == len(log)
    # Only the signature was wrong: the same event signed by its author applies.
    assert [e.seq for e in ledger.apply(genuine).applied] == [len(log) + 1]


async def test_a_dead_worker_means_not_verified_not_valid() -> None:
    _, log = _history()
    checks = [c for d in _decoded(log) for c in signature_checks(d)]
    async with open_verify_pool(1) as pool:
        assert await pool.check(checks) == [True] * len(checks)
        for worker in pool._all:
            worker.process.kill()
        with trio.fail_after(10):
            assert await pool.check(checks) == [False] * len(checks)


async def test_incoming_batch_verify_is_shared_and_small_batches_skip_it() -> None:
    _, log = _history()
    batch = IncomingBatch.prepare(Ledger(), log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batch.verify)
        nursery.start_soon(batch.verify)  # waits for the first, does not check twice
    assert await batch.verified() == [True] * len(log)
    small = IncomingBatch.prepare(Ledger(), log[:3])
    assert await small.verified() is None  # the ledger checks them inline


def test_worker_answers_and_refuses_malformed_jobs() -> None:
    _, log = _history()
    checks = [c for d in _decoded(log[:2]) for c in signature_checks(d)]
    bad = (checks[0][0], checks[0][1] + b"x", checks[0][2])
    job, sent = encode_job([*checks, bad, (b"", "not bytes", b"")])  # type: ignore[list-item]
    assert sent == [0, 1, 2, 3]  # the str one is left out (and counts as failed)
    count, _ = JOB_HEADER.unpack_from(job)
    assert answer(job[JOB_HEADER.size:], count)[4:] == b"\x01\x01\x01\x00"
    with pytest.raises((ValueError, struct.error)):
        answer(job[JOB_HEADER.size:-1], count)
    out = io.BytesIO()
    assert serve(io.BytesIO(job[:-1]), out) == 1  # truncated job: the worker stops
    assert serve(io.BytesIO(job), out) == 0


async def test_pool_checks_that_cannot_be_framed_count_as_failed() -> None:
    _, log = _history()
    checks = [c for d in _decoded(log[:3]) for c in signature_checks(d)]
    unframable = (b"k" * 32, "not bytes", b"s" * 64)
    forged = (checks[0][0], checks[0][1], bytes(64))
    async with open_verify_pool(1) as pool:
        got = await pool.check([*checks, unframable, forged])  # type: ignore[list-item]
    assert got == [True] * len(checks) + [False, False]


def test_a_worker_lowers_its_own_priority_before_answering() -> None:
    with subprocess.Popen([sys.executable, "-m", "peer.net.verify_worker", "3"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as worker:
        try:
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write(JOB_HEADER.pack(0, 0))  # an empty job: answered at once
            worker.stdin.flush()
            assert worker.stdout.read(4) == b"\x00\x00\x00\x00"
            # It has answered, so it has already reniced itself.
            ours = os.getpriority(os.PRIO_PROCESS, 0)
            assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, ours + 3)
            worker.stdin.close()
            assert worker.wait(10) == 0
        finally:
            worker.kill()


async def test_the_pool_starts_its_workers_below_the_node_priority() -> None:
    _, log = _history()
    checks = signature_checks(_decoded(log[:2])[1])
    async with open_verify_pool(2) as pool:
        # Two jobs at once both wait for the workers the first one starts (neither
        # finds the pool empty); a worker lowers its priority before it answers
        # anything, so one job answered by each worker shows both have.
        results: list[list[bool]] = []

        async def check() -> None:
            results.append(await pool.check(checks))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(check)
            nursery.start_soon(check)
        assert results == [[True, True]] * 2
        job, sent = encode_job(checks)
        for worker in pool._all:
            assert await worker.submit(job, len(sent)) == b"\x01\x01"
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert WORKER_NICE > 0
        assert [os.getpriority(os.PRIO_PROCESS, w.process.pid) for w in pool._all] == [
            min(19, ours + WORKER_NICE)] * 2


def test_rejection_type_is_shared() -> None:
    rejected = decode_signed(SignedEvent(event=b"\x08", signature=b""))
    assert isinstance(rejected, Rejection)


async def test_a_batch_the_caller_verified_is_not_checked_again() -> None:
    _, log = _history()
    ledger = Ledger()
    assert ledger.apply(log[0]).rejection is None
    batch = IncomingBatch.prepare(ledger, log[:4], verified=True)
    assert [d.signed for d in batch.events] == log[1:4]  # known ones still left out
    # A batch this small is otherwise left to the ledger's inline checks (None).
    assert await batch.verified() == [True] * 3
    assert await IncomingBatch.prepare(ledger, log[:4]).verified() is None
