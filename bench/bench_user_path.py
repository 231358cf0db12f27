"""The user's bid path against a bare relay of the same shape, in one run.

``python -m bench.bench_user_path`` prints one JSON object; ``python -m bench`` runs it
with the others. The same client (``bench._control_loadgen``: plain asyncio grpclib
over a Unix socket, ``c`` concurrent workers, each on its own auction, for
``SECONDS``) measures accepted bids/s:

- ``nodes_N``: through the Control socket of a bidder node in a network of N node
  processes (``bench._harness``): Control -> bidder node -> the seller's PlaceBid
  (checked, signed, durable, pushed to every peer) -> the Accept durable at the
  bidder -> the reply (the accepted bid and the auction's summary).
- ``relay``: ``bench._relay``, the same shape from the same libraries and nothing
  else: a grpclib call over a Unix socket into a trio-asyncio process that makes one
  grpclib call over TCP to a third process, which does one group-committed, fsync'd
  SQLite insert and answers.

``ratio`` = node path / relay at the same concurrency; goal >= 0.5 at 3 nodes (10
nodes reported). ``latency`` percentiles are per accepted bid, in ms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench._harness import PYTHON, ROOT, Cluster, log, read_json_line, run_helpers, stop_process
from bench.bench_network import open_auctions, seller_head

CONCURRENCY = (1, 16, 64)
NETWORKS = (3, 10)
SECONDS = float(os.environ.get("BENCH_USER_PATH_SECONDS", "3"))
GOAL = 0.5
START_DELAY = 1.0  # the generator imports and warms up before its window


def _load(socket: Path, auctions: Sequence[str], first_amount: int,
          seconds: float) -> dict[str, Any]:
    (out,) = run_helpers("_control_loadgen", [{
        "socket": str(socket), "mode": "closed", "auctions": list(auctions),
        "first_amount": first_amount, "duration": seconds,
        "start_at": time.monotonic() + START_DELAY}])
    return {"per_s": out["per_s"], "accepted": out["ok"],
            "latency_p50_ms": out["latency"]["p50_ms"],
            "latency_p99_ms": out["latency"]["p99_ms"],
            "errors": out["errors"], "rejected": out["rejected"]}


def _spawn(args: dict[str, Any]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PYTHON, "-m", "bench._relay", json.dumps(args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)


def relay_rates(concurrency: Sequence[int], seconds: float) -> dict[str, Any]:
    with TemporaryDirectory(prefix="bench-relay-", dir="/tmp") as tmp:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            sink = _spawn({"role": "sink", "db": f"{tmp}/relay.sqlite3"})
            procs.append(sink)
            port = read_json_line(sink)["port"]
            socket = Path(tmp) / "control.sock"
            middle = _spawn({"role": "middle", "socket": str(socket),
                             "sink": f"127.0.0.1:{port}"})
            procs.append(middle)
            read_json_line(middle)
            out: dict[str, Any] = {}
            for c in concurrency:
                out[str(c)] = _load(socket, [f"lot-{i}" for i in range(c)], 1, seconds)
                log(f"relay c={c}: {out[str(c)]['per_s']}/s")
            return out
        finally:
            for proc in procs:
                stop_process(proc)
                if proc.stdout is not None:
                    proc.stdout.close()


def node_rates(n: int, concurrency: Sequence[int], seconds: float,
               relay: dict[str, Any]) -> dict[str, Any]:
    with Cluster("bench-user-") as cluster:
        nodes = cluster.start_nodes(n, "Node")
        cluster.wait_mesh(nodes)
        seller, bidder = nodes[0], nodes[1]
        auctions = [f"{a}:{s}" for a, s in open_auctions(seller, max(concurrency))]
        cluster.wait_heads([bidder], seller.node_id, seller_head(seller))
        row: dict[str, Any] = {}
        for round_index, c in enumerate(concurrency):
            load = _load(bidder.control_socket, auctions[:c], 1_000_000 * (round_index + 1),
                         seconds)
            base = relay[str(c)]["per_s"]
            load["relay_per_s"] = base
            load["ratio"] = round(load["per_s"] / base, 3) if base else None
            row[str(c)] = load
            log(f"user path n={n} c={c}: {load['per_s']}/s ratio {load['ratio']}")
        return row


def run(networks: Sequence[int] = NETWORKS, concurrency: Sequence[int] = CONCURRENCY,
        seconds: float = SECONDS) -> dict[str, Any]:
    relay = relay_rates(concurrency, seconds)
    out: dict[str, Any] = {"relay": relay}
    for n in networks:
        out[f"nodes_{n}"] = node_rates(n, concurrency, seconds, relay)
    three = [r["ratio"] for r in out.get("nodes_3", {}).values()]
    worst = min((r for r in three if r is not None), default=None)
    out["worst_ratio_3_nodes"] = worst
    out["goal"] = f">= {GOAL} at 3 nodes"
    out["goal_met"] = worst is not None and worst >= GOAL
    return out


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=2)
    print()
