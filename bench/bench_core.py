"""Benchmark of the node's core: Ed25519, the ledger, and the ledger with the store.

``python -m bench.bench_core`` prints one JSON object; ``python -m bench`` runs it with
the others. Figures (events are a realistic mix, see ``_workload``: per auction one
``Open``, ``BIDS_PER_AUCTION`` ``Accept``s and one ``Close``, from ``SELLERS`` sellers):

- ``raw_verify_per_s``: PyNaCl ``VerifyKey.verify`` over pre-signed event bytes, the
  floor the rest is compared with.
- ``apply_verified_false``: ``Ledger.apply`` as for events from peers: decode, hash,
  Ed25519 of the event and, for an ``Accept``, of the bidder's bid too. Its
  ``ratio_to_raw_verify`` is events/s over raw verifications/s, and
  ``signature_ratio_to_raw_verify`` counts the signatures actually checked.
- ``apply_verified_true``: the rebuild path (``verified=True``) over all events.
- ``rebuild``: a store of all events reopened, ``load_all`` and ``apply(verified=True)``
  on every row: what a restart costs.
- ``verify_apply_store``: ``apply`` (verifying) then ``store.append`` in batches of
  ``STORE_BATCH``, events/s and ratios as above. Goals: >= 50% of raw verify (events or
  signatures, see the ratios), and rebuild of 100,000 events < 5 s.

Events are encoded by the small protobuf writer below (on the core's ``varint``)
instead of betterproto2 (checked against it on the first events), only so that
generating 100,000 signed events takes seconds, not minutes; signatures are real.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import trio

from peer.core.identity import Identity
from peer.core.ledger import Ledger
from peer.core.wire import varint
from peer.gen.auction.v1 import Accept, AuctionId, Bid, Event, Open, SignedBid, SignedEvent
from peer.storage.rows import StoredEvent
from peer.storage.store import EventStore

EVENTS = 100_000
VERIFY_EVENTS = 20_000  # the verifying runs check ~1.8 signatures per event: keep them short
SELLERS = 20
BIDDERS = 20
BIDS_PER_AUCTION = 8
STORE_BATCH = 256
_T0 = 1_700_000_000_000


# ---------------------------------------------------------------- a minimal protobuf writer


def _len_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value) if value else b""


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _len_field(number, payload) if payload else b""


def _auction_id(author: bytes, seq: int) -> bytes:
    return _bytes_field(1, author) + _int_field(2, seq)


def _encode_bid(auction: bytes, seq: int, bidder: bytes, name: str, amount: str, nonce: int,
                time_ms: int) -> bytes:
    return (_len_field(1, _auction_id(auction, seq)) + _bytes_field(2, bidder)
            + _bytes_field(3, name.encode()) + _bytes_field(4, amount.encode())
            + _bytes_field(5, b"USDt") + _int_field(6, nonce) + _int_field(7, time_ms))


def _encode_event(author: bytes, seq: int, prev: bytes, time_ms: int, name: str,
                  body_field: int, body: bytes) -> bytes:
    return (_bytes_field(1, author) + _int_field(2, seq) + _bytes_field(3, prev)
            + _int_field(4, time_ms) + _bytes_field(5, name.encode())
            + _len_field(body_field, body))


# ---------------------------------------------------------------- workload


def _workload(events: int) -> list[SignedEvent]:
    """``events`` signed events from ``SELLERS`` logs, interleaved round-robin."""
    sellers = [Identity.generate(f"Seller#{i}") for i in range(SELLERS)]
    bidders = [Identity.generate(f"Bidder#{i}") for i in range(BIDDERS)]
    logs: list[list[SignedEvent]] = [[] for _ in sellers]
    per_seller = -(-events // SELLERS)
    checked = False
    for s_index, seller in enumerate(sellers):
        prev = b""
        open_seq = 0
        bids = 0
        for seq in range(1, per_seller + 1):
            time_ms = _T0 + seq
            if open_seq == 0:
                body_field, open_seq, bids = 10, seq, 0
                body = (_bytes_field(1, f"Item#{seq}".encode()) + _bytes_field(2, b"75")
                        + _bytes_field(3, b"USDt"))
            elif bids < BIDS_PER_AUCTION:
                bids += 1
                bidder = bidders[(s_index + bids) % BIDDERS]
                bid = _encode_bid(seller.node_id, open_seq, bidder.node_id, bidder.name,
                                  f"{75 + bids}.5", seq, time_ms)
                if not checked:
                    assert bid == bytes(Bid(auction=AuctionId(author=seller.node_id,
                                                              seq=open_seq),
                                            bidder=bidder.node_id, bidder_name=bidder.name,
                                            amount=f"{75 + bids}.5", currency="USDt",
                                            nonce=seq, time_ms=time_ms))
                signed_bid = _bytes_field(1, bid) + _bytes_field(2, bidder.sign(bid))
                body_field, body = 11, _len_field(1, signed_bid)
            else:
                body_field, body = 12, _len_field(1, _auction_id(seller.node_id, open_seq))
                open_seq = 0
            data = _encode_event(seller.node_id, seq, prev, time_ms, seller.name, body_field,
                                 body)
            if not checked and seq == 1:
                assert data == bytes(Event(author=seller.node_id, seq=1, time_ms=time_ms,
                                           author_name=seller.name,
                                           open=Open(item="Item#1", start_amount="75",
                                                     currency="USDt")))
            if not checked and body_field == 11:
                event = Event.parse(data)
                assert event.accept is not None
                assert data == bytes(Event(author=seller.node_id, seq=seq, prev=prev,
                                           time_ms=time_ms, author_name=seller.name,
                                           accept=Accept(bid=SignedBid(
                                               bid=event.accept.bid.bid,
                                               signature=event.accept.bid.signature))))
                checked = True
            logs[s_index].append(SignedEvent(event=data, signature=seller.sign(data)))
            prev = hashlib.sha256(data).digest()
    mixed = [log[i] for i in range(per_seller) for log in logs]
    return mixed[:events]


def _signatures(ledger_events: list[SignedEvent]) -> int:
    # Every event has the author's signature; an Accept carries the bidder's too.
    return sum(2 if Event.parse(e.event).accept is not None else 1 for e in ledger_events)


# ---------------------------------------------------------------- measurements


def _raw_verify(signed: list[SignedEvent]) -> float:
    from nacl.signing import VerifyKey

    pairs = [(VerifyKey(Event.parse(e.event).author), e) for e in signed]
    started = time.perf_counter()
    for key, e in pairs:
        key.verify(e.event, e.signature)
    return len(pairs) / (time.perf_counter() - started)


def _verify_chunk(items: list[tuple[bytes, bytes, bytes]]) -> int:
    """Verify (public key, data, signature) triples; runs in a worker process."""
    from nacl.signing import VerifyKey

    for key, data, signature in items:
        VerifyKey(key).verify(data, signature)
    return len(items)


def raw_verify_processes(signed: list[SignedEvent], workers: int) -> float:
    """Raw Ed25519 verifications per second on ``workers`` processes.

    What the node's verify pool (``peer.net.verify_pool``, one worker per core) could do
    at most: the events are split evenly, shipped to already-started workers and
    checked there; the time runs from the first chunk sent to the last answer.
    """
    triples = [(Event.parse(e.event).author, e.event, e.signature) for e in signed]
    chunks = [triples[i::workers] for i in range(workers)]
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_verify_chunk, [[t] for t in triples[:workers]]))  # start them all
        started = time.perf_counter()
        checked = sum(pool.map(_verify_chunk, chunks))
        elapsed = time.perf_counter() - started
    return checked / elapsed


def _apply_all(signed: list[SignedEvent], verified: bool) -> tuple[Ledger, float]:
    ledger = Ledger()
    started = time.perf_counter()
    for e in signed:
        result = ledger.apply(e, verified=verified)
        if result.rejection is not None:
            raise AssertionError(str(result.rejection))
    elapsed = time.perf_counter() - started
    assert ledger.event_count == len(signed)
    return ledger, elapsed


async def _verify_apply_store(path: Path, signed: list[SignedEvent]) -> float:
    ledger = Ledger()
    async with EventStore.open(path) as store:
        started = time.perf_counter()
        batch: list[StoredEvent] = []
        for e in signed:
            result = ledger.apply(e)
            if result.rejection is not None:
                raise AssertionError(str(result.rejection))
            batch.extend(StoredEvent(x.author, x.seq, x.signed.event, x.signed.signature)
                         for x in result.applied)
            if len(batch) >= STORE_BATCH:
                await store.append(batch)
                batch = []
        if batch:
            await store.append(batch)
        elapsed = time.perf_counter() - started
    assert ledger.event_count == len(signed)
    return elapsed


async def _fill(path: Path, signed: list[SignedEvent]) -> None:
    ledger = Ledger()
    async with EventStore.open(path) as store:
        rows = []
        for e in signed:
            for x in ledger.apply(e, verified=True).applied:
                rows.append(StoredEvent(x.author, x.seq, x.signed.event, x.signed.signature))
        for i in range(0, len(rows), 5000):
            await store.append(rows[i:i + 5000])


def _rebuild(path: Path, expected: int) -> dict[str, float]:
    started = time.perf_counter()
    ledger = Ledger()
    store = EventStore.open(path)
    try:
        opened = time.perf_counter()
        for row in store.load_all():
            ledger.apply(SignedEvent(event=row.data, signature=row.signature), verified=True)
    finally:
        store.close()
    elapsed = time.perf_counter() - started
    assert ledger.event_count == expected, (ledger.event_count, expected)
    return {"events": expected, "open_s": round(opened - started, 3),
            "total_s": round(elapsed, 3), "events_per_s": round(expected / elapsed)}


def run(events: int = EVENTS, verify_events: int = VERIFY_EVENTS) -> dict[str, object]:
    """Generate the workload, run every measurement, and return the figures."""
    started = time.perf_counter()
    signed = _workload(events)
    generated = time.perf_counter() - started
    print(f"generated {len(signed)} events in {generated:.1f}s", file=sys.stderr, flush=True)
    sample = signed[:verify_events]
    signatures = _signatures(sample)
    raw = _raw_verify(sample)

    _, t_verify = _apply_all(sample, verified=False)
    _, t_trusted = _apply_all(signed, verified=True)
    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        t_store = trio.run(_verify_apply_store, Path(tmp) / "vas.sqlite3", sample)
        trio.run(_fill, Path(tmp) / "rebuild.sqlite3", signed)
        rebuild = _rebuild(Path(tmp) / "rebuild.sqlite3", len(signed))

    def rates(seconds: float) -> dict[str, float]:
        per_s = len(sample) / seconds
        return {"events": len(sample), "seconds": round(seconds, 3),
                "events_per_s": round(per_s),
                "ratio_to_raw_verify": round(per_s / raw, 3),
                "signature_ratio_to_raw_verify": round(signatures / seconds / raw, 3)}

    return {
        "workload": {"events": len(signed), "sellers": SELLERS,
                     "bids_per_auction": BIDS_PER_AUCTION,
                     "signatures_per_event": round(signatures / len(sample), 3),
                     "generate_s": round(generated, 2)},
        "raw_verify_per_s": round(raw),
        "apply_verified_false": rates(t_verify),
        "apply_verified_true": {"events": len(signed), "seconds": round(t_trusted, 3),
                                "events_per_s": round(len(signed) / t_trusted)},
        "rebuild": rebuild,
        "verify_apply_store": {**rates(t_store), "batch": STORE_BATCH},
        "goals": {
            "verify_apply_store_ge_50pct_events": len(sample) / t_store / raw >= 0.5,
            "verify_apply_store_ge_50pct_signatures": signatures / t_store / raw >= 0.5,
            "rebuild_100k_lt_5s": rebuild["total_s"] < 5.0 if len(signed) >= 100_000 else None,
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
