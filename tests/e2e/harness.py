"""Run real `python -m peer serve` processes and drive them through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT

PY = sys.executable


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli(*args: str, timeout: float = 30.0, prefix: Sequence[str] = ()) -> CliResult:
    """Run `python -m peer ARGS` (after ``prefix``, e.g. `ip netns exec NS`) and capture
    its result."""
    proc = subprocess.run([*prefix, PY, "-m", "peer", *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env(), cwd=ROOT)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


# Nothing listens on the discard port on loopback: "no grape answers", quickly. A node
# survives that by design, so tests of one node alone need no grape.
NO_GRAPE = "http://127.0.0.1:9"


def serve_once(data_dir: Path, name: str = "Client#1", *extra: str,
               timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run a `serve` that is expected to refuse to start; fails the test if it hangs."""
    return subprocess.run(
        [PY, "-m", "peer", "serve", "--name", name, "--data-dir", str(data_dir),
         "--grape", NO_GRAPE, "--port", "0", *extra],
        capture_output=True, text=True, timeout=timeout, env=child_env(), cwd=ROOT)


@dataclass
class NodeProc:
    """One `serve --json` process and every JSON line it printed."""

    name: str
    data_dir: Path
    grapes: list[str]
    proc: subprocess.Popen[str] | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    ready: dict[str, Any] = field(default_factory=dict)
    _readers: list[threading.Thread] = field(default_factory=list)
    #: Find the data dir from the name alone (`--name`, no `--data-dir`), as users do;
    #: ``data_dir`` is then where the node is expected to keep it.
    by_name: bool = False
    # Runs the node elsewhere, e.g. `ip netns exec NS` (the CLI commands too).
    prefix: list[str] = field(default_factory=list)
    # Flags as a user would give them; None: the test flags (--port 0, the grapes,
    # fast discovery and healing through the environment).
    flags: list[str] | None = None

    def _target(self) -> list[str]:
        return ["--name", self.name] if self.by_name else ["--data-dir", str(self.data_dir)]

    def start(self, timeout: float = 30.0) -> NodeProc:
        args = [*self.prefix, PY, "-m", "peer", "serve", "--name", self.name, "--json"]
        if not self.by_name:
            args += ["--data-dir", str(self.data_dir)]
        env = child_env()
        if self.flags is not None:
            args += self.flags
        else:
            args += ["--port", "0"]
            for g in self.grapes:
                args += ["--grape", g]
            # Fast discovery and healing for tests.
            env.setdefault("AUCTION_PEER_LOOKUP_INTERVAL", "0.3")
            env.setdefault("AUCTION_PEER_ANTI_ENTROPY_INTERVAL", "1.0")
            env.setdefault("AUCTION_PEER_ANNOUNCE_INTERVAL", "1.0")
        self.lines = []
        self.stderr_lines = []
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.ready = self.wait_for(lambda r: r.get("event") == "ready", timeout=timeout,
                                   what="ready")
        return self

    def _read_stdout(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"event": "garbage", "line": line}
            with self._cond:
                self.lines.append(record)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._cond:
                self.stderr_lines.append(line)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 15.0,
                 what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for record in self.lines:
                    if predicate(record):
                        return record
                if self.proc is not None and self.proc.poll() is not None:
                    pytest.fail(f"{self.name} exited ({self.proc.returncode}) while waiting "
                                f"for {what}; stderr:\n{''.join(self.stderr_lines[-30:])}")
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{self.name}: timed out waiting for {what}; got "
                                f"{self.lines[-10:]}; stderr:\n"
                                f"{''.join(self.stderr_lines[-30:])}")
                self._cond.wait(min(left, 0.5))

    def wait_text(self, text: str, timeout: float = 15.0) -> dict[str, Any]:
        return self.wait_for(lambda r: text in str(r.get("text", "")), timeout=timeout,
                             what=repr(text))

    def wait_event(self, event: str, label: str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait for a notification of kind ``event`` about auction ``label`` (SELLER->ITEM)."""
        return self.wait_for(
            lambda r: r.get("event") == event and r.get("auction", {}).get("label") == label,
            timeout=timeout, what=f"{event} {label}")

    def wait_peers(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status = self.cli("status", "--json")
            if status.code == 0:
                up = [p for p in status.json().get("peers", []) if p.get("up")]
                if len(up) >= count:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not see {count} peer(s) up: {status}")
            time.sleep(0.1)

    def cli(self, *args: str) -> CliResult:
        return cli(args[0], *self._target(), *args[1:], prefix=self.prefix)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_pipes()
        return self.proc.returncode

    def _close_pipes(self) -> None:
        # The readers end at EOF once the process is gone; then the pipes can close.
        for reader in self._readers:
            reader.join(timeout=10)
        assert self.proc is not None
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@contextmanager
def nodes(tmp_path: Path, grapes: list[str], names: list[str]) -> Iterator[list[NodeProc]]:
    started: list[NodeProc] = []
    try:
        for name in names:
            node = NodeProc(name, tmp_path / name.replace("#", ""), grapes)
            started.append(node.start())
        yield started
    finally:
        for node in started:
            if node.proc is not None:
                node.stop()
