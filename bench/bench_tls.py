"""What TLS costs a node: the same load on nodes started with and without it.

``python -m bench.bench_tls`` prints one JSON object. Every case runs on real nodes
(``python -m peer serve`` processes, ``AUCTION_PEER_TLS=0`` or ``1``), alternating
plain and TLS ``BENCH_TLS_ROUNDS`` times (default 2) so that a machine whose load
drifts during the run weighs on both alike:

- ``bid``: 3 nodes, ``RATE`` paced bids a second on the seller for ``SECONDS``
  (``bench._loadgen``, one connection, over TLS when the nodes are): the seller's
  CPU per bid, all three nodes' CPU per bid (the seller's pushes to its two peers
  are TLS too), and the time until every peer printed the bid (p50, p99);
- ``sync``: a node joins one peer holding ``EVENTS`` events: events per second
  (start to ready), the CPU the source spends per event it sends and the CPU the
  joiner spends per event (its start included);
- ``connect``: ``CONNECTS`` fresh connections to a node, each with a Hello (what a
  probe costs: TCP, the TLS handshake with its certificate, the node's signature):
  milliseconds each, and the node's CPU each.

``ratio`` divides TLS by plain (means over the rounds); CPU figures are the ones to
trust on a shared machine, since they hardly move with other load.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import trio

from bench import bench_network, bench_sync
from bench._harness import Cluster, log, process_cpu_s
from devsupport.serving import QuietMeshHooks
from peer.core.identity import Identity
from peer.net import aio
from peer.net.mesh import Mesh

RATE = 100.0
SECONDS = 8.0
WORKERS = 4
EVENTS = 50_000
CONNECTS = 50
SYNC_TIMEOUT = 300.0


def _env(tls: bool) -> dict[str, str]:
    return {"AUCTION_PEER_TLS": "1" if tls else "0"}


def _bid(tls: bool) -> dict[str, Any]:
    with Cluster("bench-tls-bid-") as cluster:
        nodes = cluster.start_nodes(3, "Node", env=_env(tls))
        cluster.wait_mesh(nodes)
        seller_cpu = process_cpu_s(nodes[0].proc.pid)
        result = bench_network.measure_propagation(cluster, nodes, RATE, SECONDS, WORKERS,
                                                   tls=tls)
        seller_cpu = process_cpu_s(nodes[0].proc.pid) - seller_cpu
    bids = max(int(result["bids"]), 1)
    # seller_cpu also holds the warm-up bids and opening the auctions: a few out of
    # hundreds, the same in both modes.
    return {"bids": result["bids"],
            "seller_cpu_ms_per_bid": round(seller_cpu * 1000 / bids, 3),
            "cluster_cpu_ms_per_bid": result["cluster_cpu_ms_per_bid"],
            "every_peer_p50_ms": result["every_peer"]["p50_ms"],
            "every_peer_p99_ms": result["every_peer"]["p99_ms"],
            "bid_call_p50_ms": result["bid_call"]["p50_ms"]}


def _sync(tls: bool, source_dir: Path) -> dict[str, Any]:
    with Cluster("bench-tls-sync-") as cluster:
        target = cluster.root / "source"
        bench_sync.copy_data_dir(source_dir, target)
        source = cluster.spawn("Source#1", data_dir=target, env=_env(tls))
        cluster.wait_ready([source], timeout=SYNC_TIMEOUT)
        cpu = process_cpu_s(source.proc.pid)
        joiner = cluster.spawn("Joiner#1", env=_env(tls))
        cluster.wait_ready([joiner], timeout=SYNC_TIMEOUT)
        cpu = process_cpu_s(source.proc.pid) - cpu
        joiner_cpu = process_cpu_s(joiner.proc.pid)
        elapsed = joiner.ready_at - joiner.spawned_at
        events = int(joiner.ready["events"])
    # The joiner's CPU includes its start (about 0.4 s, the same in both modes).
    return {"events": events, "events_per_s": round(events / elapsed),
            "source_cpu_us_per_event": round(cpu * 1e6 / max(events, 1), 2),
            "joiner_cpu_us_per_event": round(joiner_cpu * 1e6 / max(events, 1), 2)}



async def _connects(address: str, tls: bool) -> float:
    async with aio.open_loop() as loop:
        mesh = Mesh(Identity.generate("Prober"), "127.0.0.1:1", QuietMeshHooks(), aio.Bridge(loop),
                    tls=tls)
        await mesh.who_is_at(address)  # warm up
        started = time.perf_counter()
        for _ in range(CONNECTS):
            await mesh.who_is_at(address)  # a new channel each time: connect + Hello
        return time.perf_counter() - started


def _connect(tls: bool) -> dict[str, Any]:
    with Cluster("bench-tls-connect-") as cluster:
        (node,) = cluster.start_nodes(1, "Node", env=_env(tls))
        cpu = process_cpu_s(node.proc.pid)
        elapsed = trio.run(_connects, f"127.0.0.1:{node.port}", tls)
        cpu = process_cpu_s(node.proc.pid) - cpu
    return {"connect_and_hello_ms": round(elapsed * 1000 / CONNECTS, 2),
            "node_cpu_ms_per_connect": round(cpu * 1000 / CONNECTS, 2)}


def _means(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in rounds[0]:
        values = [float(r[name]) for r in rounds]
        out[name] = round(statistics.fmean(values), 3)
        if len(values) > 1:
            out[f"{name}_range"] = [min(values), max(values)]
    return out


def run(rounds: int | None = None) -> dict[str, Any]:
    rounds = rounds or int(os.environ.get("BENCH_TLS_ROUNDS", "2"))
    measured: dict[str, dict[bool, list[dict[str, Any]]]] = {
        case: {False: [], True: []} for case in ("bid", "sync", "connect")}
    with Cluster("bench-tls-prep-") as prep:
        source = prep.root / "full"
        bench_sync.fill_data_dir(source, list(bench_sync.workload(EVENTS)))
        for index in range(rounds):
            for tls in (False, True):
                mode = "tls" if tls else "plain"
                log(f"bench_tls round {index + 1}/{rounds}: {mode}")
                results = {"bid": _bid(tls), "sync": _sync(tls, source),
                           "connect": _connect(tls)}
                for case, result in results.items():
                    measured[case][tls].append(result)
                    log(f"bench_tls {case} {mode}: {result}")
    out: dict[str, Any] = {"rounds": rounds, "rate": RATE, "seconds": SECONDS,
                           "events": EVENTS, "connects": CONNECTS}
    for case, modes in measured.items():
        plain, with_tls = _means(modes[False]), _means(modes[True])
        out[case] = {"plain": plain, "tls": with_tls,
                     "ratio": {name: round(with_tls[name] / plain[name], 3)
                               for name in plain
                               if not name.endswith("_range") and plain[name]}}
        log(f"bench_tls {case}: {out[case]['ratio']}")
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
