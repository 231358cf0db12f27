"""Scale and footprint of node processes: ``python -m bench.bench_footprint``.

- ``converge``: N node processes (``python -m peer serve``), full mesh, then the
  reference scenario of DESIGN.md section 1 through the Control sockets of the first
  three (Client#1 opens Pic#1 at 75 and Client#2 Pic#2 at 60; bids 75 by Client#2,
  75.5 by Client#3, 80 by Client#2; Client#1 closes). Figures: ``scenario_s`` (first
  call to the last node's ``closed`` line naming Client#2 at 80), ``after_close_ms``
  (close answered to the last node's ``closed`` line), time to start and to a full
  mesh. Ratio: N nodes over 3 nodes, same run.
- ``rss``: VmRSS of an idle node in a 3-node network after ``IDLE_S`` (goal < 60 MB),
  beside a bare interpreter that only imports what ``serve`` imports (the baseline);
  also the mean idle RSS at N nodes.
- ``start``: spawn-to-``ready`` of a node alone (no peers) with an empty data dir and
  with a 100,000-event one (median of ``STARTS``), beside the bare import time.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

from bench._harness import PYTHON, ROOT, Cluster, NodeProc, log, rss_kib, stop_process
from bench.bench_sync import fill_data_dir, workload
from peer.gen.auction.v1 import BidRequest, CloseRequest, ControlReply, OpenRequest

SIZES = (3, 30)
IDLE_S = 2.0
STARTS = 3
EVENTS = 100_000
WINNER = (b'"winner": "Client#2"', b'"amount": "80"')

_IMPORTS = ("import peer.cli.commands, peer.node, peer.net.mesh, peer.storage.store, trio_asyncio, "
            "grpclib.server, httpx, sys; print('ok', flush=True); sys.stdin.read()")


def bare_interpreter() -> dict[str, float]:
    """Spawn-to-imported time and RSS of a Python that imports what a node imports."""
    times = []
    rss = 0
    for _ in range(STARTS):
        started = time.monotonic()
        proc = subprocess.Popen([PYTHON, "-c", _IMPORTS], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            proc.stdout.readline()
            times.append(time.monotonic() - started)
            time.sleep(0.2)
            rss = rss_kib(proc.pid)
        finally:
            stop_process(proc)
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()
    return {"import_s": round(statistics.median(times), 3), "rss_mib": round(rss / 1024, 1)}


def _control(node: NodeProc, fn: Any) -> ControlReply:
    reply: ControlReply = node.control(fn)
    if reply.rejected is not None:
        raise RuntimeError(f"{node.name}: {reply.rejected.code.name} {reply.rejected.reason}")
    return reply


def converge(n: int) -> dict[str, Any]:
    with Cluster(f"bench-conv{n}-") as cluster:
        started = time.monotonic()
        nodes = cluster.start_nodes(n, "Client")
        ready = time.monotonic() - started
        mesh = cluster.wait_mesh(nodes, timeout=180)
        time.sleep(IDLE_S)
        rss = [rss_kib(node.proc.pid) for node in nodes]
        c1, c2, c3 = nodes[:3]
        mark = cluster.reader.count()
        begin = time.monotonic()
        _control(c1, lambda s: s.open(OpenRequest(item="Pic#1", start_amount="75",
                                                  currency="USDt"), timeout=30))
        _control(c2, lambda s: s.open(OpenRequest(item="Pic#2", start_amount="60",
                                                  currency="USDt"), timeout=30))
        # As in the demo: everyone has seen both opens before anyone bids.
        cluster.wait_heads(nodes, c1.node_id, 1)
        cluster.wait_heads(nodes, c2.node_id, 1)
        for bidder, amount in ((c2, "75"), (c3, "75.5"), (c2, "80")):
            request = BidRequest(auction="Client#1->Pic#1", amount=amount)
            _control(bidder, lambda s, r=request: s.bid(r, timeout=30))
        _control(c1, lambda s: s.close(CloseRequest(auction="Client#1->Pic#1"), timeout=30))
        closed = time.monotonic()
        deadline = closed + 60
        last: dict[int, float] = {}
        while len(last) < n:
            for line in cluster.reader.snapshot(mark):
                if b'"event": "closed"' in line.raw and all(w in line.raw for w in WINNER):
                    last[line.node] = line.at
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(last)}/{n} nodes saw the winner")
            time.sleep(0.01)
        end = max(last.values())
    result = {"nodes": n, "start_all_ready_s": round(ready, 2),
              "mesh_complete_s": round(ready + mesh, 2),
              "scenario_s": round(end - begin, 3),
              "after_close_ms": round((end - closed) * 1000, 1),
              "idle_rss_mib_mean": round(statistics.mean(rss) / 1024, 1),
              "idle_rss_mib_max": round(max(rss) / 1024, 1)}
    log(f"converge: {result}")
    return result


def starts(events: int) -> dict[str, Any]:
    with Cluster("bench-start-") as cluster:
        empty = []
        alone_rss = 0
        for i in range(STARTS):
            node = cluster.spawn(f"Alone#{i + 1}")
            cluster.wait_ready([node])
            empty.append(node.ready_at - node.spawned_at)
            if i == 0:
                time.sleep(IDLE_S)
                alone_rss = rss_kib(node.proc.pid)
            stop_process(node.proc)
        source = cluster.root / "full"
        fill_data_dir(source, list(workload(events)))
        full = []
        full_rss = 0
        for i in range(STARTS):
            node = cluster.spawn(f"Full#{i + 1}", data_dir=source)
            cluster.wait_ready([node], timeout=300)
            full.append(node.ready_at - node.spawned_at)
            assert node.ready["events"] == events, node.ready
            full_rss = rss_kib(node.proc.pid)
            stop_process(node.proc)
    return {"empty_s": round(statistics.median(empty), 3),
            "events": events, "full_s": round(statistics.median(full), 3),
            "alone_idle_rss_mib": round(alone_rss / 1024, 1),
            "full_rss_mib": round(full_rss / 1024, 1)}


def run(sizes: tuple[int, ...] = SIZES, events: int = EVENTS) -> dict[str, Any]:
    bare = bare_interpreter()
    start = starts(events)
    conv = {f"nodes_{n}": converge(n) for n in sizes}
    small = conv[f"nodes_{sizes[0]}"]
    for value in conv.values():
        value["scenario_ratio_to_smallest"] = round(value["scenario_s"] / small["scenario_s"], 2)
    idle = small["idle_rss_mib_max"]
    return {
        "baseline_bare_interpreter": bare,
        "start": {**start,
                  "empty_ratio_to_bare_import": round(start["empty_s"] / bare["import_s"], 2),
                  "full_ratio_to_empty": round(start["full_s"] / start["empty_s"], 2)},
        "rss": {"idle_node_in_3_network_mib": idle, "bare_interpreter_mib": bare["rss_mib"],
                "ratio_to_bare": round(idle / bare["rss_mib"], 2),
                "goal_lt_60mb": idle * 1.048576 < 60},
        "converge": conv,
    }


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    print(json.dumps(run((3, 10), 10_000) if quick else run(), indent=2))
