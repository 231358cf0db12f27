"""A hot auction: does a bid cost more as its auction grows?

``python -m bench.bench_hot_auction`` prints one JSON object; ``python -m bench`` runs it
with the others. Two node processes (a seller and a bidder node) and one localgrape, as
in ``bench._harness``. One client (``bench._control_loadgen``, plain asyncio, one
channel) bids ``BENCH_HOT_BIDS`` times (default 10,000; 10 warm-up bids first, not counted),
one bid after the other, on
ONE auction through the bidder node's Control socket: the user's path, Control ->
bidder node -> the seller's PlaceBid -> durable on both -> reply.

``ratio`` = the rate of the last tenth of the bids (1,000 of 10,000) / the rate of the
first tenth; goal >= 0.9 (nothing on the bid path grows with the auction).
``reply_bytes`` is the size of the first and of the last Control reply.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from bench._harness import Cluster, log, run_helpers
from bench.bench_network import open_auctions, seller_head

BIDS = int(os.environ.get("BENCH_HOT_BIDS", "10000"))
GOAL = 0.9


def window_rates(done_at: list[float], start: float, window: int) -> tuple[float, float]:
    """Bids/s over the first and the last ``window`` answers (``start``: before the first)."""
    first = window / (done_at[window - 1] - start)
    last = window / (done_at[-1] - done_at[-window - 1])
    return first, last


def run(bids: int = BIDS) -> dict[str, Any]:
    if bids < 20:
        raise ValueError(f"BENCH_HOT_BIDS must be at least 20, not {bids}")
    with Cluster("bench-hot-") as cluster:
        seller, bidder = cluster.start_nodes(2, "Node")
        cluster.wait_mesh([seller, bidder])
        ((author, seq),) = open_auctions(seller, 1)
        cluster.wait_heads([bidder], seller.node_id, seller_head(seller))
        (out,) = run_helpers("_control_loadgen", [{
            "socket": str(bidder.control_socket), "mode": "sequential", "count": bids,
            "auctions": [f"{author}:{seq}"], "first_amount": 1}], timeout=3600.0)
        done_at: list[float] = out["done_at"]
        if len(done_at) != bids:
            raise RuntimeError(f"only {len(done_at)} of {bids} bids accepted: "
                               f"{out['errors']} errors, rejected {out['rejected']}")
        window = bids // 10
        started = float(out["start"])
        first, last = window_rates(done_at, started, window)
        ratio = round(last / first, 3)
        log(f"hot auction: first {window} {first:.1f}/s, last {window} {last:.1f}/s, "
            f"ratio {ratio}")
        return {"bids": bids, "window": window,
                "first_per_s": round(first, 1), "last_per_s": round(last, 1),
                "ratio": ratio, "goal": f">= {GOAL}", "goal_met": ratio >= GOAL,
                "reply_bytes": out["reply_bytes"],
                "overall_per_s": round(bids / (done_at[-1] - started), 1)}


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=2)
    print()
