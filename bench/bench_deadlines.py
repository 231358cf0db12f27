"""Micro benchmark of the deadline loop's question with many open timed auctions.

``python -m bench.bench_deadlines`` prints one JSON object; ``python -m bench`` runs it
with the others. After every applied event a node's deadline loop asks which open
timed auctions have ended and when the next one ends (``peer/node/deadlines.py``).
Here a ledger holds ``n`` open timed auctions (10, then 10,000) and takes ``BIDS``
Accepts, one per millisecond of stamps, each of which moves its auction's end
(anti-sniping window longer than the time left). Per setting, in µs per Accept (best
of three runs), each part timed on its own:

- ``apply_us``: ``Ledger.apply(verified=True)``;
- ``sorted_us``: the question as the loop asked it before: a sort of every open timed
  auction (``Ledger.timed_open_auctions``), the announced set trimmed to it and a scan
  to the first that has not ended (over the first ``SORTED_BIDS`` Accepts);
- ``due_us``: the question as it is asked now: ``Ledger.timed_open_due`` (a heap);
- ``apply_and_sorted_per_s`` / ``apply_and_due_per_s``: events/s of the two together.

``due_ratio_10000_to_10`` is ``due_us`` at 10,000 over at 10 open auctions (about 1:
the question does not grow with the open auctions); ``sorted_ratio_10000_to_10`` the same
for the sort.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.ledger import Ledger
from peer.core.signed_events import make_signed_bid, sign_event
from peer.gen.auction.v1 import Accept, Open, SignedEvent

SIZES = (10, 10_000)
BIDS = int(os.environ.get("BENCH_DEADLINE_BIDS", "3000"))
SORTED_BIDS = 300
_T0 = 1_700_000_000_000
_ENDS_IN = 600_000  # the auctions end 10 min after their Open...
_WINDOW = 3_600_000  # ...and every bid moves its auction's end to its stamp + 1 h


def _events(open_auctions: int, bids: int) -> tuple[list[SignedEvent], list[SignedEvent]]:
    """The seller's Opens, then ``bids`` Accepts on random auctions, one per ms."""
    seller = Identity.generate("Seller#1")
    bidder = Identity.generate("Bidder#1")
    ledger = Ledger()
    rnd = random.Random(1)

    def logged(time_ms: int, **body: Any) -> SignedEvent:
        event = ledger.next_event(seller.node_id, seller.name, time_ms, **body)
        signed = sign_event(seller, event)
        assert ledger.apply(signed, verified=True).rejection is None
        return signed

    opens = [logged(_T0, open=Open(item=f"Lot#{i}", start_amount="1", currency="USDt",
                                   ends_at_ms=_T0 + _ENDS_IN + 7 * i, extend_ms=_WINDOW))
             for i in range(open_auctions)]
    amounts = [1] * (open_auctions + 1)
    accepts = []
    for nonce in range(1, bids + 1):
        seq = rnd.randint(1, open_auctions)
        amounts[seq] += 1
        stamp = _T0 + nonce
        bid = make_signed_bid(bidder, AuctionKey(seller.node_id, seq), str(amounts[seq]),
                              "USDt", nonce, stamp)
        accepts.append(logged(stamp, accept=Accept(bid=bid)))
    return opens, accepts


def _sorted_question(ledger: Ledger, now: int, announced: set[AuctionKey]) -> int | None:
    # The loop before the heap: sort them all, trim the announced set, scan.
    open_timed = ledger.timed_open_auctions()
    announced.intersection_update(a.key for a in open_timed)
    for auction in open_timed:
        if not auction.has_ended(now):
            return auction.ends_ms - now
    return None


def _due_question(ledger: Ledger, now: int, announced: set[AuctionKey]) -> int | None:
    announced.difference_update([k for k in announced if not ledger.is_timed_open(k)])
    _, following = ledger.timed_open_due(now)
    return None if following is None else following - now


def _timed(opens: list[SignedEvent], accepts: list[SignedEvent],
           question: Callable[[Ledger, int, set[AuctionKey]], int | None]
           ) -> tuple[float, float]:
    """µs per Accept of ``apply`` and of ``question`` after it, timed apart."""
    ledger = Ledger()
    for signed in opens:
        ledger.apply(signed, verified=True)
    announced: set[AuctionKey] = set()
    now = _T0 + 1
    clock = time.perf_counter
    applying = asking = 0.0
    for signed in accepts:
        t0 = clock()
        ledger.apply(signed, verified=True)
        t1 = clock()
        following = question(ledger, now, announced)
        asking += clock() - t1
        applying += t1 - t0
        assert following is not None and following > 0
        now += 1
    return applying / len(accepts) * 1e6, asking / len(accepts) * 1e6


def _setting(open_auctions: int, bids: int) -> dict[str, Any]:
    opens, accepts = _events(open_auctions, bids)
    # The sort at 10,000 takes ms per event: a few hundred events measure it well.
    questions = (("sorted", _sorted_question, accepts[:SORTED_BIDS]),
                 ("due", _due_question, accepts))
    apply_us: list[float] = []
    best: dict[str, float] = {}
    for _ in range(3):  # best of three, interleaved: the machine is shared
        for name, question, events in questions:
            applying, asking = _timed(opens, events, question)
            apply_us.append(applying)
            best[name] = min(best.get(name, float("inf")), asking)
    return {
        "open_timed": open_auctions,
        "bids": bids,
        "apply_us": round(min(apply_us), 2),
        "sorted_us": round(best["sorted"], 2),
        "due_us": round(best["due"], 2),
        "apply_and_sorted_per_s": round(1e6 / (min(apply_us) + best["sorted"])),
        "apply_and_due_per_s": round(1e6 / (min(apply_us) + best["due"])),
    }


def run(bids: int = BIDS) -> dict[str, Any]:
    settings = {str(n): _setting(n, bids) for n in SIZES}
    small, large = settings[str(SIZES[0])], settings[str(SIZES[-1])]

    def ratio(name: str) -> float:
        return round(float(large[name]) / max(float(small[name]), 0.01), 1)

    return {**settings, "due_ratio_10000_to_10": ratio("due_us"),
            "sorted_ratio_10000_to_10": ratio("sorted_us"),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
