"""Profile node processes under a benchmark's load with py-spy (``pip install py-spy``).

``python -m bench._profile throughput|propagation|user_path|sync [OUT_DIR]`` starts the same
cluster as the benchmark, attaches ``py-spy record --format raw`` (collapsed stacks)
to the interesting node processes while the load runs, and prints per process the
top self-time frames and the top inclusive frames (percent of samples).

- ``throughput``: 10 nodes, 64 concurrent bidders; profiles the seller and one peer.
- ``propagation``: 10 nodes, 100 bids/s; profiles the seller and one peer.
- ``user_path``: 3 nodes, 16 bidders through the bidder node's Control socket (as
  ``bench_user_path``); profiles the seller, the bidder node and the third node, and
  prints each process's CPU time per accepted bid (user + system, from /proc), the
  client's included.
- ``sync``: a joiner pulling 100,000 events from three full peers; profiles the joiner
  and one source.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import bench_network, bench_sync
from bench._harness import PYTHON, ROOT, Cluster, NodeProc, process_cpu_s, run_helpers, stop_process

PYSPY = str(Path(sys.executable).parent / "py-spy")
RATE_HZ = 250


def summarize(path: Path, top: int = 20) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    out = [f"{path.name}: {total} samples", "  self:"]
    out += [f"    {100 * n / total:5.1f}% {f}" for f, n in own.most_common(top)]
    out.append("  inclusive:")
    out += [f"    {100 * n / total:5.1f}% {f}" for f, n in incl.most_common(top * 2)]
    return "\n".join(out)


class Recorder:
    """py-spy on some pids for ``seconds``, in the background."""

    def __init__(self, out_dir: Path, targets: dict[str, NodeProc], seconds: float) -> None:
        self.procs = [
            subprocess.Popen([PYSPY, "record", "--pid", str(node.proc.pid), "--rate",
                              str(RATE_HZ), "--duration", str(int(seconds)), "--format", "raw",
                              "--nonblocking", "-o", str(out_dir / f"{label}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for label, node in targets.items()]
        self.files = [out_dir / f"{label}.txt" for label in targets]

    def finish(self) -> None:
        for proc in self.procs:
            try:
                proc.wait(60)
            finally:
                stop_process(proc)


def profile_network(out_dir: Path, mode: str) -> list[Path]:
    with Cluster("bench-prof-") as cluster:
        nodes = cluster.start_nodes(10, "Node")
        cluster.wait_mesh(nodes)
        seller = nodes[0]
        if mode == "throughput":
            auctions = bench_network.open_auctions(seller, 64)
            args = bench_network._loadgen_args(seller.address, auctions, 2, mode="closed",
                                               duration=8.0, first_amount=1)
        else:
            auctions = bench_network.open_auctions(seller, 8)
            args = bench_network._loadgen_args(seller.address, auctions, 1, mode="paced",
                                               rate=100.0, count=800, first_amount=1)
        recorder: list[Recorder] = []

        def attach() -> None:
            time.sleep(bench_network.LOADGEN_START_DELAY + 0.5)
            recorder.append(Recorder(out_dir, {"seller": seller, "peer": nodes[5]}, 6))

        thread = threading.Thread(target=attach)
        thread.start()
        run_helpers("_loadgen", args)
        thread.join()
        recorder[0].finish()
        return recorder[0].files


def profile_user_path(out_dir: Path, concurrency: int = 16, seconds: float = 12.0
                      ) -> list[Path]:
    with Cluster("bench-prof-user-") as cluster:
        nodes = cluster.start_nodes(3, "Node")
        cluster.wait_mesh(nodes)
        seller, bidder, third = nodes
        auctions = [f"{a}:{s}" for a, s in bench_network.open_auctions(seller, concurrency)]
        cluster.wait_heads([bidder], seller.node_id, bench_network.seller_head(seller))
        args = {"socket": str(bidder.control_socket), "mode": "closed", "auctions": auctions,
                "first_amount": 1, "duration": seconds, "start_at": time.monotonic() + 1.5}
        client = subprocess.Popen([PYTHON, "-m", "bench._control_loadgen", json.dumps(args)],
                                  cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        pids = {"seller": seller.proc.pid, "bidder": bidder.proc.pid,
                "third": third.proc.pid, "client": client.pid}
        try:
            time.sleep(2.5)  # the client's warm-up and start delay
            window = seconds - 3
            before = {label: process_cpu_s(pid) for label, pid in pids.items()}
            started = time.monotonic()
            recorder = Recorder(out_dir, {"seller": seller, "bidder": bidder, "third": third},
                                window)
            time.sleep(window)
            used = {label: process_cpu_s(pid) - before[label] for label, pid in pids.items()}
            elapsed = time.monotonic() - started
            out, _ = client.communicate(timeout=120)
            recorder.finish()
        finally:
            stop_process(client)
            if client.stdout is not None:
                client.stdout.close()
        rate = json.loads(out.splitlines()[-1])["per_s"]
        per_bid = {label: round(cpu * 1e6 / max(rate * elapsed, 1), 1)
                   for label, cpu in used.items()}
        print(f"{rate} accepted bids/s; CPU us per bid: {per_bid} (load {os.getloadavg()[0]:.1f})")
        return recorder.files


def profile_sync(out_dir: Path) -> list[Path]:
    signed = list(bench_sync.workload(bench_sync.EVENTS))
    with Cluster("bench-prof-sync-") as cluster:
        full = [cluster.root / f"full{i}" for i in range(3)]
        bench_sync.fill_data_dir(full[0], signed)
        for d in full[1:]:
            bench_sync.copy_data_dir(full[0], d)
        sources = [cluster.spawn(f"Source#{i + 1}", data_dir=d) for i, d in enumerate(full)]
        cluster.wait_ready(sources, timeout=300)
        cluster.wait_mesh(sources)
        joiner = cluster.spawn("Joiner#1")
        time.sleep(1.0)
        recorder = Recorder(out_dir, {"joiner": joiner, "source": sources[0]}, 15)
        cluster.wait_ready([joiner], timeout=300)
        recorder.finish()
        return recorder.files


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "throughput"
    out_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="prof-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if mode == "sync":
        files = profile_sync(out_dir)
    elif mode == "user_path":
        files = profile_user_path(out_dir)
    else:
        files = profile_network(out_dir, mode)
    for f in files:
        if f.exists():
            print(summarize(f))
    print(f"raw collapsed stacks in {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
