"""Network benchmarks of real node processes: bid throughput, propagation, dead peers.

``python -m bench.bench_network`` prints one JSON object; ``python -m bench`` runs it
with the others. Every node is its own ``python -m peer serve --json`` process on
127.0.0.1 with one localgrape (see ``bench._harness``); bidders are separate
``bench._loadgen`` processes calling the seller's public ``Peer.PlaceBid`` with bids
signed by ``peer.core.signed_events.make_signed_bid``, each worker on its own auction.

- ``throughput``: accepted bids/s at the seller (each validated, signed, fsynced and
  queued to every peer) with 1, 16 and 64 concurrent bidders, in networks of 3 and 10
  nodes. Baseline, same run, same client, same concurrency: the bare ``PeerService``
  behind the same trio-asyncio bridge answering a same-size reply at once
  (``bench._baseline_server``). ``ratio`` = node / baseline; goal >= 0.5. ``drain_s``
  is how long after the last answer every peer held every accepted bid;
  ``seller_rss_mib`` and ``largest_peer_rss_mib`` the resident memory once drained.
- ``propagation``: bids paced at ``RATE``/s; latency from the seller's ``bid`` line on
  stdout (printed after the Accept is durable) to the same line on each other node
  (printed after it is applied and durable there), both stamped by the same reader
  thread. ``every_peer`` is per bid the slowest peer (the goal: p99 < 20 ms at 10
  nodes); ``per_peer`` is every (bid, peer) pair. Ratio: to the 3-node network. Every
  accepted bid counts: once every peer holds every bid, the lines still being printed
  are waited for; ``incomplete`` counts bids missing a line after ``LINES_TIMEOUT``.
- ``dead_peers``: the propagation measurement in a 3-node network with 0 and with 5
  dead addresses announced in Grape before the nodes start (``refused``: nothing
  listens; ``blackhole``: a socket that listens but never accepts), measured after
  the seller has marked all 5 down. ``ratio_p50`` and ``ratio_p99`` = with dead /
  without; goal: both <= 1.1 (``goal_p50_ratio_le_1_1``, ``goal_p99_ratio_le_1_1``).
"""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench._harness import (
    PYTHON,
    ROOT,
    Cluster,
    NodeProc,
    log,
    percentiles,
    process_cpu_s,
    read_json_line,
    rss_kib,
    run_helpers,
    stop_process,
)
from devsupport.ports import free_port
from peer.gen.auction.v1 import ControlReply, ControlStub, OpenRequest

CONCURRENCY = (1, 16, 64)
NETWORKS = (3, 10)
SECONDS = 3.0
PROPAGATION_NODES = (3, 10, 30)
RATE = 100.0
PROPAGATION_SECONDS = 3.0
PROPAGATION_WORKERS = 8
DEAD = 5
LOADGEN_START_DELAY = 2.0  # lets the generator processes import and warm up
# Once every peer holds every bid, how long its bid lines may take to be printed.
LINES_TIMEOUT = 30.0


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def open_auctions(seller: NodeProc, count: int) -> list[tuple[str, int]]:
    """Open ``count`` auctions (start price 1) on ``seller``; their (author hex, seq)."""
    keys = []
    for i in range(count):
        request = OpenRequest(item=f"Lot#{i + 1}", start_amount="1", currency="USDt")
        reply: ControlReply = seller.control(functools.partial(_open, request))
        assert reply.auction is not None, reply
        author, _, seq = reply.auction.id.rpartition(":")
        keys.append((author, int(seq)))
    return keys


async def _open(request: OpenRequest, stub: ControlStub) -> ControlReply:
    reply: ControlReply = await stub.open(request, timeout=10)
    return reply


def seller_head(seller: NodeProc) -> int:
    heads: dict[bytes, int] = {h.author: h.seq for h in seller.status().heads}
    return heads.get(seller.node_id, 0)


def _loadgen_args(target: str, auctions: Sequence[tuple[str, int]], processes: int,
                  **extra: Any) -> list[dict[str, Any]]:
    start_at = time.monotonic() + LOADGEN_START_DELAY
    chunks = [list(auctions[i::processes]) for i in range(processes)]
    return [{"target": target, "auctions": chunk, "start_at": start_at, **extra}
            for chunk in chunks if chunk]


def _processes(concurrency: int) -> int:
    return 1 if concurrency == 1 else 2


def _closed_load(target: str, auctions: Sequence[tuple[str, int]], first_amount: int,
                 seconds: float, **extra: Any) -> dict[str, Any]:
    outs = run_helpers("_loadgen", _loadgen_args(
        target, auctions, _processes(len(auctions)), mode="closed", duration=seconds,
        first_amount=first_amount, **extra))
    ok = sum(int(o["ok"]) for o in outs)
    window = max(float(o["window_s"]) for o in outs)
    p50 = max(float(o["latency"]["p50_ms"]) for o in outs)
    p99 = max(float(o["latency"]["p99_ms"]) for o in outs)
    return {"accepted": ok, "ok_total": sum(int(o["ok_total"]) for o in outs),
            "window_s": round(window, 3), "per_s": round(ok / window, 1),
            "latency_p50_ms": p50, "latency_p99_ms": p99,
            "errors": sum(int(o["errors"]) for o in outs),
            "rejected": [o["rejected"] for o in outs if o["rejected"]]}


# ====================================================================== throughput


def baseline_rates(concurrency: Sequence[int], seconds: float) -> dict[int, dict[str, Any]]:
    proc = subprocess.Popen([PYTHON, "-m", "bench._baseline_server", "{}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        hello = read_json_line(proc)
        target = f"127.0.0.1:{hello['port']}"
        fake = [(("ab" * 32), i + 1) for i in range(max(concurrency))]
        out = {}
        for c in concurrency:
            out[c] = {**_closed_load(target, fake[:c], 1_000_000 * c, seconds, tls=False),
                      "reply_bytes": hello["reply_bytes"]}
            log(f"baseline c={c}: {out[c]['per_s']}/s")
        return out
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def throughput(networks: Sequence[int] = NETWORKS, concurrency: Sequence[int] = CONCURRENCY,
               seconds: float = SECONDS) -> dict[str, Any]:
    base = baseline_rates(concurrency, seconds)
    out: dict[str, Any] = {"baseline": {str(c): b for c, b in base.items()}}
    for n in networks:
        with Cluster("bench-tp-") as cluster:
            nodes = cluster.start_nodes(n, "Node")
            cluster.wait_mesh(nodes)
            seller = nodes[0]
            auctions = open_auctions(seller, max(concurrency))
            row: dict[str, Any] = {}
            for round_index, c in enumerate(concurrency):
                load = _closed_load(seller.address, auctions[:c], 1_000_000 * (round_index + 1),
                                    seconds)
                answered = time.monotonic()
                head = seller_head(seller)
                done = cluster.wait_heads(nodes[1:], seller.node_id, head)
                load["drain_s"] = round(done - answered, 3)
                load["seller_rss_mib"] = round(rss_kib(seller.proc.pid) / 1024, 1)
                load["largest_peer_rss_mib"] = round(
                    max(rss_kib(p.proc.pid) for p in nodes[1:]) / 1024, 1)
                load["baseline_per_s"] = base[c]["per_s"]
                load["ratio"] = _ratio(load["per_s"], base[c]["per_s"])
                row[str(c)] = load
                log(f"throughput n={n} c={c}: {load['per_s']}/s ratio {load['ratio']}")
            out[f"nodes_{n}"] = row
    ratios = [r["ratio"] for k, v in out.items() if k.startswith("nodes_") for r in v.values()]
    out["worst_ratio"] = min((r for r in ratios if r is not None), default=None)
    out["goal_ge_50pct_of_baseline"] = out["worst_ratio"] is not None and \
        out["worst_ratio"] >= 0.5
    return out


# ====================================================================== propagation


def measure_propagation(cluster: Cluster, nodes: Sequence[NodeProc], rate: float,
                        seconds: float, workers: int, **extra: Any) -> dict[str, Any]:
    """Paced bids on ``nodes[0]``; latency until every other node printed each bid."""
    seller, others = nodes[0], nodes[1:]
    auctions = open_auctions(seller, workers)
    cluster.wait_heads(others, seller.node_id, seller_head(seller))
    mark = cluster.reader.count()
    count = int(rate * seconds)
    args = _loadgen_args(seller.address, auctions, 1, mode="paced", rate=rate, count=count,
                         first_amount=1, **extra)
    cpu_before = nodes_cpu_s(nodes)
    outs = run_helpers("_loadgen", args)
    cluster.wait_heads(others, seller.node_id, seller_head(seller))
    cpu_used = nodes_cpu_s(nodes) - cpu_before
    # Every peer holds every bid now, but prints its line after the store commit:
    # wait for all the lines, so that the slowest bids are in the percentiles too.
    sent = sum(int(o["ok"]) for o in outs)
    waited = time.monotonic()
    while True:
        accepted_at, seen = _bid_lines(cluster, mark, seller.index, args[0]["start_at"])
        missing = sum(len(others) - len(seen.get(key, {})) for key in accepted_at)
        complete = not missing and len(accepted_at) >= sent
        if complete or time.monotonic() - waited > LINES_TIMEOUT:
            break
        time.sleep(0.01)
    per_peer: list[float] = []
    every: list[float] = []
    for key, t0 in accepted_at.items():
        times = seen.get(key, {})
        per_peer.extend(t - t0 for t in times.values())
        if len(times) == len(others):
            every.append(max(times.values()) - t0)
    return {"nodes": len(nodes), "rate": rate, "bids": sent, "measured": len(every),
            # Bids the seller or some peer never printed within LINES_TIMEOUT (not in
            # every_peer); 0 unless a node is broken.
            "incomplete": sent - len(every),
            "lines_wait_s": round(time.monotonic() - waited, 3),
            "achieved_rate": round(sent / max(float(o["window_s"]) for o in outs), 1),
            "every_peer": percentiles(every), "per_peer": percentiles(per_peer),
            "bid_call": outs[0]["latency"],
            "cluster_cpu_ms_per_bid": round(cpu_used * 1000 / max(sent, 1), 2)}


def _bid_lines(cluster: Cluster, mark: int, seller: int, since: float
               ) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], dict[int, float]]]:
    """The seller's ``bid`` lines since ``since`` (bid -> when), and every other node's
    (bid -> node -> when), a bid being (auction id, amount)."""
    accepted_at: dict[tuple[str, str], float] = {}
    seen: dict[tuple[str, str], dict[int, float]] = {}
    for line in cluster.reader.snapshot(mark):
        if b'"event": "bid"' not in line.raw:
            continue
        record = line.json()
        key = (record["auction"]["id"], record["amount"])
        if line.node == seller:
            if line.at >= since:  # not the warm-up bids
                accepted_at[key] = line.at
        else:
            seen.setdefault(key, {})[line.node] = line.at
    return accepted_at, seen


def nodes_cpu_s(nodes: Sequence[NodeProc]) -> float:
    """CPU seconds (user + system) the node processes have used so far.

    Unlike latency, this hardly moves when other work shares the machine: it is the
    figure to compare changes by on a busy box.
    """
    return sum(process_cpu_s(node.proc.pid) for node in nodes)


def propagation(sizes: Sequence[int] = PROPAGATION_NODES, rate: float = RATE,
                seconds: float = PROPAGATION_SECONDS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in sizes:
        try:
            with Cluster("bench-prop-") as cluster:
                started = time.monotonic()
                nodes = cluster.start_nodes(n, "Node")
                ready = time.monotonic() - started
                mesh = cluster.wait_mesh(nodes, timeout=120)
                result = measure_propagation(cluster, nodes, rate, seconds,
                                             PROPAGATION_WORKERS)
                result["start_all_ready_s"] = round(ready, 2)
                result["mesh_complete_s"] = round(ready + mesh, 2)
        except RuntimeError as exc:  # e.g. a network too large for this machine
            result = {"nodes": n, "error": str(exc)}
        out[f"nodes_{n}"] = result
        log(f"propagation n={n}: {result.get('every_peer', result.get('error'))}")
    base = out.get(f"nodes_{sizes[0]}")
    for value in out.values():
        if base is not None and "every_peer" in value and "every_peer" in base:
            value["p99_ratio_to_smallest"] = _ratio(value["every_peer"]["p99_ms"],
                                                    base["every_peer"]["p99_ms"])
    ten = out.get("nodes_10")
    out["goal_p99_lt_20ms_at_10"] = None if ten is None or "every_peer" not in ten \
        else ten["every_peer"]["p99_ms"] < 20
    return out


# ====================================================================== dead peers


def dead_peers(rate: float = RATE, seconds: float = PROPAGATION_SECONDS,
               dead: int = DEAD) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("none", "refused", "blackhole"):
        holes: list[socket.socket] = []
        try:
            with Cluster("bench-dead-") as cluster:
                if kind == "refused":
                    ports = [free_port() for _ in range(dead)]
                elif kind == "blackhole":
                    for _ in range(dead):
                        s = socket.socket()
                        s.bind(("127.0.0.1", 0))
                        s.listen(1)  # never accepted: connects hang or time out
                        holes.append(s)
                    ports = [s.getsockname()[1] for s in holes]
                else:
                    ports = []
                for port in ports:
                    cluster.announce("auction", port)
                started = time.monotonic()
                nodes = cluster.start_nodes(3, "Node")
                ready = time.monotonic() - started
                cluster.wait_mesh(nodes)
                # "After the first failure": the seller has marked every dead one down.
                deadline = time.monotonic() + 30
                while nodes[0].status().unanswered_addresses < len(ports):
                    if time.monotonic() > deadline:
                        raise RuntimeError("dead addresses never marked down")
                    time.sleep(0.05)
                result = measure_propagation(cluster, nodes, rate, seconds,
                                             PROPAGATION_WORKERS)
                result["dead"] = len(ports)
                result["start_all_ready_s"] = round(ready, 2)
                out[kind] = result
                log(f"dead={kind}: every_peer {result['every_peer']}")
        finally:
            for s in holes:
                s.close()
    base = out["none"]["every_peer"]
    for kind in ("refused", "blackhole"):
        ep = out[kind]["every_peer"]
        out[kind]["ratio_p50"] = _ratio(ep["p50_ms"], base["p50_ms"])
        out[kind]["ratio_p99"] = _ratio(ep["p99_ms"], base["p99_ms"])
    for q in ("p50", "p99"):
        out[f"goal_{q}_ratio_le_1_1"] = all(
            (out[k][f"ratio_{q}"] or 99) <= 1.1 for k in ("refused", "blackhole"))
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """All three measurements; ``quick`` trims sizes for a smoke test."""
    if quick:
        return {"throughput": throughput((3,), (1, 16), 1.0),
                "propagation": propagation((3,), RATE, 1.0),
                "dead_peers": dead_peers(RATE, 1.0)}
    return {"throughput": throughput(), "propagation": propagation(), "dead_peers": dead_peers()}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
