"""Initial sync of a new node process from real peers: ``python -m bench.bench_sync``.

The source nodes' data dirs are prepared by writing ``EVENTS`` synthetic signed events
(``bench.bench_core``'s fast generator: ``SELLERS`` sellers, many auctions, real
Ed25519 signatures on every event and every bid) straight into ``peer.storage.store.EventStore``.
Each source is a ``python -m peer serve`` process; then a new, empty node process is
started and timed from spawn to its ``ready`` line (it prints ``ready`` only after its
initial sync; ``synced`` is checked to equal ``EVENTS``).

Cases: ``one_peer``; ``three_peers_full`` (three sources holding all events, as in a
converged network). A split case (each source holding a third) is not measured: the
sources find each other through Grape and converge before the joiner starts.
Figures: ``events_per_s`` (events / spawn-to-ready), ``net_events_per_s`` (the same
minus the start-to-ready of an empty node with no peers, measured in the same run),
``ratio_to_raw_verify`` (events/s over the raw Ed25519 verify rate of this run) and
``signature_ratio_to_raw_verify`` (signatures checked per second, ~1.8 per event, over
the same). The joiner checks signatures in worker processes (one per core), so the same
ratios are also given against raw verify on that many processes
(``raw_verify_processes_per_s``, ``*_to_process_raw_verify``): like with like. Goals:
>= 10,000 events/s and >= 0.5 of raw verify, met only if every case meets them. Also the
start-to-ready of a source node with its 100,000-event data dir and the joiner's RSS
once synced (a node holding 100,000 events).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import trio

from bench import bench_core
from bench._harness import Cluster, log, rss_kib
from peer.gen.auction.v1 import SignedEvent
from peer.storage import key_file, paths

EVENTS = 100_000
VERIFY_SAMPLE = 20_000
SYNC_TIMEOUT = 300.0


@functools.lru_cache(maxsize=2)
def workload(events: int) -> tuple[SignedEvent, ...]:
    """``events`` signed events, interleaved round-robin over ``bench_core.SELLERS``."""
    return tuple(bench_core._workload(events))


def fill_data_dir(data_dir: Path, signed: list[SignedEvent]) -> None:
    """A node data dir whose store already holds ``signed``, with a key of its own.

    A node refuses to start on events without a key (its identity must never be
    replaced silently), so the key is made here, as a first start would have.
    """
    data_dir.mkdir(parents=True, mode=0o700)
    trio.run(bench_core._fill, paths.database_path(data_dir), signed)
    key_file.load_or_create(paths.key_path(data_dir), data_dir.name)


def copy_data_dir(source: Path, target: Path) -> None:
    target.mkdir(parents=True, mode=0o700)
    for f in source.iterdir():
        if f.name.startswith("events.sqlite3"):
            shutil.copy(f, target / f.name)
    # The same events, but a node of its own: a new key, not a copy of the source's.
    key_file.load_or_create(paths.key_path(target), target.name)


def _empty_start(cluster: Cluster) -> float:
    node = cluster.spawn("Empty#1")
    cluster.wait_ready([node])
    elapsed = node.ready_at - node.spawned_at
    node.proc.terminate()
    node.proc.wait(10)
    return elapsed


def _sync_case(name: str, sources: list[Path], expected: int, empty_s: float,
               raw: float, raw_processes: float, sigs_per_event: float) -> dict[str, Any]:
    with Cluster(f"bench-sync-{name}-") as cluster:
        starts = []
        src_nodes = []
        for i, src in enumerate(sources):
            node = cluster.spawn(f"Source#{i + 1}", data_dir=src)
            src_nodes.append(node)
        cluster.wait_ready(src_nodes, timeout=SYNC_TIMEOUT)
        starts = [round(n.ready_at - n.spawned_at, 3) for n in src_nodes]
        cluster.wait_mesh(src_nodes)
        joiner = cluster.spawn("Joiner#1")
        cluster.wait_ready([joiner], timeout=SYNC_TIMEOUT)
        elapsed = joiner.ready_at - joiner.spawned_at
        synced = int(joiner.ready["synced"])
        events = int(joiner.ready["events"])
        rss = rss_kib(joiner.proc.pid)
    per_s = events / elapsed
    net = events / max(elapsed - empty_s, 1e-6)
    result = {"sources": len(sources), "events": events, "synced": synced,
              "complete": events == expected, "spawn_to_ready_s": round(elapsed, 3),
              "events_per_s": round(per_s), "net_events_per_s": round(net),
              "ratio_to_raw_verify": round(per_s / raw, 3),
              "net_ratio_to_raw_verify": round(net / raw, 3),
              "signature_ratio_to_raw_verify": round(per_s * sigs_per_event / raw, 3),
              "ratio_to_process_raw_verify": round(per_s / raw_processes, 3),
              "signature_ratio_to_process_raw_verify": round(
                  per_s * sigs_per_event / raw_processes, 3),
              "source_start_to_ready_s": starts, "joiner_rss_mib": round(rss / 1024, 1)}
    log(f"sync {name}: {result}")
    return result


def run(events: int = EVENTS) -> dict[str, Any]:
    started = time.perf_counter()
    signed = list(workload(events))
    generated = time.perf_counter() - started
    sample = signed[:VERIFY_SAMPLE]
    raw = bench_core._raw_verify(sample)
    workers = max(1, os.cpu_count() or 1)  # as peer.net.verify_pool
    raw_processes = bench_core.raw_verify_processes(sample, workers)
    sigs_per_event = bench_core._signatures(sample) / len(sample)
    out: dict[str, Any] = {"events": events, "sellers": bench_core.SELLERS,
                           "generate_s": round(generated, 2), "raw_verify_per_s": round(raw),
                           "verify_processes": workers,
                           "raw_verify_processes_per_s": round(raw_processes),
                           "signatures_per_event": round(sigs_per_event, 3)}
    with Cluster("bench-sync-prep-") as prep:
        out["empty_start_to_ready_s"] = round(_empty_start(prep), 3)
        full = [prep.root / "full0"]
        fill_data_dir(full[0], signed)
        for i in (1, 2):
            full.append(prep.root / f"full{i}")
            copy_data_dir(full[0], full[i])
        empty_s = float(out["empty_start_to_ready_s"])
        out["one_peer"] = _sync_case("one", full[:1], events, empty_s, raw, raw_processes,
                                     sigs_per_event)
        out["three_peers_full"] = _sync_case("full", full, events, empty_s, raw, raw_processes,
                                             sigs_per_event)
    cases = [out[k] for k in ("one_peer", "three_peers_full")]
    out["goals"] = {
        "ge_10k_events_per_s": all(c["events_per_s"] >= 10_000 for c in cases),
        "ge_50pct_raw_verify": all(c["ratio_to_raw_verify"] >= 0.5 for c in cases),
        "ge_50pct_process_raw_verify": all(c["ratio_to_process_raw_verify"] >= 0.5
                                           for c in cases),
    }
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
