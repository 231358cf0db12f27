"""Shared machinery of the network benchmarks: a Grape, node processes, their output.

Everything runs on 127.0.0.1. A :class:`Cluster` owns a temporary directory, one
localgrape process (``python -m localgrape``; ``BENCH_GRAPE=real`` uses the real
grenache-grape from ``node_modules/.bin/grape`` instead) and any number of node
processes started as ``python -m peer serve --json``. Every process it starts is
stopped when the ``with`` block ends, whatever happens inside it.

Node stdout (one JSON object per line) is read by one selector thread that stamps
every line with ``time.monotonic()`` as it arrives; CLOCK_MONOTONIC is shared by all
processes on Linux, so stamps from different nodes compare directly. Lines are kept
raw and parsed only when a benchmark asks.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from devsupport.grape import NPM_GRAPE, grape_answers
from devsupport.ports import free_port, free_tcp_udp_port
from peer.cli.control_client import call
from peer.config import NodeConfig, with_env_overrides
from peer.gen.auction.v1 import ControlStub, StatusReply, StatusRequest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
T = TypeVar("T")

# Fast discovery so that networks form in a second, not in tens of seconds.
FAST_ENV = {
    "AUCTION_PEER_LOOKUP_INTERVAL": "0.3",
    "AUCTION_PEER_ANNOUNCE_INTERVAL": "1.0",
    "AUCTION_PEER_ANTI_ENTROPY_INTERVAL": "3.0",
}
READY_TIMEOUT = 120.0


def node_tls(env: dict[str, str] | None = None) -> bool:
    """Whether nodes spawned with ``env`` (over this process's environment) serve TLS:
    what a client that calls their public port must speak."""
    config = with_env_overrides(NodeConfig(name="x", data_dir=Path()),
                                {**os.environ, **(env or {})})
    return config.use_tls


def percentiles(values: Sequence[float], scale: float = 1000.0) -> dict[str, float | int]:
    """p50/p99/max (and count) of ``values`` (seconds), in milliseconds by default."""
    if not values:
        return {"count": 0, "p50_ms": float("nan"), "p99_ms": float("nan"),
                "max_ms": float("nan")}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * scale, 3)

    return {"count": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1] * scale, 3)}


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from ``/proc``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, wait, then SIGKILL: never leave a child behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# ====================================================================== output reader


@dataclass
class Line:
    at: float
    node: int
    raw: bytes

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.raw)
        return value


class LineReader:
    """One thread reading every node's stdout, stamping each line on arrival."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._lines: list[Line] = []
        self._partial: dict[int, bytes] = {}
        self._wake_r, self._wake_w = os.pipe()
        self._selector.register(self._wake_r, selectors.EVENT_READ, -1)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="bench-line-reader",
                                        daemon=True)
        self._thread.start()

    def add(self, node: int, fd: int) -> None:
        os.set_blocking(fd, False)
        self._selector.register(fd, selectors.EVENT_READ, node)
        os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self._selector.select(0.5):
                node: int = key.data
                if node == -1:
                    os.read(self._wake_r, 4096)
                    continue
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                now = time.monotonic()
                if not chunk:
                    self._selector.unregister(key.fd)
                    continue
                data = self._partial.pop(node, b"") + chunk
                *complete, rest = data.split(b"\n")
                if rest:
                    self._partial[node] = rest
                with self._lock:
                    self._lines.extend(Line(now, node, raw) for raw in complete if raw)

    def snapshot(self, start: int = 0) -> list[Line]:
        with self._lock:
            return self._lines[start:]

    def count(self) -> int:
        with self._lock:
            return len(self._lines)

    def close(self) -> None:
        self._stop = True
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


# ====================================================================== processes


@dataclass
class NodeProc:
    index: int
    name: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    spawned_at: float
    ready_at: float = 0.0
    ready: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        port: int = self.ready["port"]
        return port

    @property
    def node_id(self) -> bytes:
        return bytes.fromhex(self.ready["node_id"])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def control_socket(self) -> Path:
        return Path(self.ready["control_socket"])

    def control(self, fn: Callable[[ControlStub], Any]) -> Any:
        """One Control call over the node's Unix socket (blocking)."""
        return call(self.control_socket, fn)

    def status(self) -> StatusReply:
        reply: StatusReply = self.control(lambda s: s.status(StatusRequest(), timeout=10))
        return reply


class Cluster:
    """A Grape and node processes in one temporary directory; all stopped on exit."""

    def __init__(self, prefix: str = "bench-") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix, dir="/tmp")
        self.root = Path(self._tmp.name)
        self.reader = LineReader()
        self.nodes: list[NodeProc] = []
        self.others: list[subprocess.Popen[bytes]] = []
        self.grape_url = ""
        self._stderr_files: list[Any] = []

    def __enter__(self) -> Cluster:
        try:
            self.grape_url = self._start_grape()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for node in self.nodes:
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            stop_process(node.proc)
        for proc in self.others:
            stop_process(proc)
        self.reader.close()
        for f in self._stderr_files:
            f.close()
        self._tmp.cleanup()

    # ------------------------------------------------------------------ grape

    def _start_grape(self) -> str:
        api = free_port()
        dht = free_tcp_udp_port()
        if os.environ.get("BENCH_GRAPE") == "real":
            grape = str(NPM_GRAPE)
            argv = [grape, "--dp", str(dht), "--aph", str(api), "--bn", "", "-b", "127.0.0.1"]
        else:
            argv = [PYTHON, "-m", "localgrape", "--dp", str(dht), "--aph", str(api),
                    "--bn", "", "-b", "127.0.0.1"]
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.others.append(proc)
        url = f"http://127.0.0.1:{api}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"grape exited early: {argv}")
            if grape_answers(url):
                return url
            time.sleep(0.05)
        raise RuntimeError("grape did not answer in 20 s")

    def announce(self, service: str, port: int) -> None:
        """Announce ``port`` under ``service`` ourselves (used for dead addresses)."""
        response = httpx.post(f"{self.grape_url}/announce",
                              json={"data": [service, port]}, timeout=5.0)
        response.raise_for_status()

    # ------------------------------------------------------------------ nodes

    def spawn(self, name: str, *, data_dir: Path | None = None,
              env: dict[str, str] | None = None, wrap: Sequence[str] = ()) -> NodeProc:
        index = len(self.nodes)
        data_dir = data_dir or self.root / f"n{index}"
        full_env = {**os.environ, **FAST_ENV, **(env or {})}
        argv = [*wrap, PYTHON, "-m", "peer", "serve", "--json", "--name", name,
                "--data-dir", str(data_dir), "--grape", self.grape_url]
        err = open(self.root / f"n{index}.stderr", "wb")  # noqa: SIM115 - closed in close()
        self._stderr_files.append(err)
        spawned = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                                stderr=err, stdin=subprocess.DEVNULL)
        node = NodeProc(index, name, data_dir, proc, spawned)
        self.nodes.append(node)
        assert proc.stdout is not None
        self.reader.add(index, proc.stdout.fileno())
        return node

    def wait_ready(self, nodes: Sequence[NodeProc], timeout: float = READY_TIMEOUT) -> None:
        """Block until every node printed its ``ready`` line."""
        deadline = time.monotonic() + timeout
        pending = {n.index: n for n in nodes if not n.ready}
        seen = 0
        while pending:
            for line in self.reader.snapshot(seen):
                seen += 1
                node = pending.get(line.node)
                if node is not None and line.raw.startswith(b'{"event": "ready"'):
                    node.ready = line.json()
                    node.ready_at = line.at
                    del pending[line.node]
            for node in pending.values():
                if node.proc.poll() is not None:
                    tail = (self.root / f"n{node.index}.stderr").read_text()[-2000:]
                    raise RuntimeError(f"{node.name} exited ({node.proc.returncode}): {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout}s: {sorted(pending)}")
            time.sleep(0.01)

    def start_nodes(self, count: int, prefix: str = "Node",
                    env: dict[str, str] | None = None) -> list[NodeProc]:
        nodes = [self.spawn(f"{prefix}#{len(self.nodes) + 1}", env=env) for _ in range(count)]
        self.wait_ready(nodes)
        return nodes

    def wait_mesh(self, nodes: Sequence[NodeProc], up: int | None = None,
                  timeout: float = 60.0) -> float:
        """Block until every node sees ``up`` (default: all the others) peers up."""
        want = len(nodes) - 1 if up is None else up
        started = time.monotonic()
        deadline = started + timeout
        todo = list(nodes)
        while todo:
            todo = [n for n in todo if sum(p.up for p in n.status().peers) < want]
            if not todo:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"mesh incomplete after {timeout}s: "
                                   f"{[n.name for n in todo]}")
            time.sleep(0.1)
        return time.monotonic() - started

    def wait_heads(self, nodes: Sequence[NodeProc], author: bytes, seq: int,
                   timeout: float = 60.0) -> float:
        """Block until every node holds ``author``'s log up to ``seq``; returns when."""
        deadline = time.monotonic() + timeout
        todo = list(nodes)
        while todo:
            todo = [n for n in todo
                    if {h.author: h.seq for h in n.status().heads}.get(author, 0) < seq]
            if not todo:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{[n.name for n in todo]} lack {author.hex()[:8]}:{seq}")
            time.sleep(0.02)
        return time.monotonic()


# ====================================================================== helper processes


@contextmanager
def helper(module: str, args: dict[str, Any], *, wait: bool = False,
           timeout: float = 300.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m bench.<module>`` with JSON args on argv; stopped on exit."""
    proc = subprocess.Popen([PYTHON, "-m", f"bench.{module}", json.dumps(args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        if wait:
            proc.wait(timeout)
        yield proc
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def read_json_line(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> dict[str, Any]:
    """The next JSON line a helper prints (its result or its ``ready`` report)."""
    assert proc.stdout is not None
    result: list[bytes] = []

    def read() -> None:
        assert proc.stdout is not None
        result.append(proc.stdout.readline())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout)
    if not result or not result[0]:
        raise RuntimeError(f"helper {proc.args!r} gave no answer (rc={proc.poll()})")
    value: dict[str, Any] = json.loads(result[0])
    return value


def run_helpers(module: str, arg_list: Sequence[dict[str, Any]],
                timeout: float = 300.0) -> list[dict[str, Any]]:
    """Run several helpers at once and return each one's JSON result."""
    procs = [subprocess.Popen([PYTHON, "-m", f"bench.{module}", json.dumps(a)], cwd=ROOT,
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
             for a in arg_list]
    try:
        outs = []
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"{module} failed ({proc.returncode})")
            outs.append(json.loads(out.splitlines()[-1]))
        return outs
    finally:
        for proc in procs:
            stop_process(proc)


def run_async(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())


def which_grape() -> str:
    return "real" if os.environ.get("BENCH_GRAPE") == "real" and shutil.which("node") \
        else "localgrape"
