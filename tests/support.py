"""Helpers shared by the test suites: free ports, waiting on conditions, real grapes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free right now on 127.0.0.1 for ``kind`` (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_tcp_udp_port() -> int:
    """A port free for both TCP and UDP (grape binds UDP on --dp, HTTP on --aph)."""
    for _ in range(100):
        port = free_port(socket.SOCK_STREAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("0.0.0.0", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free for both TCP and UDP")


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` (blocking) until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


def grape_bin() -> str | None:
    """The real grenache-grape executable, or None when Node or the package is absent."""
    explicit = os.environ.get("GRAPE_BIN")
    if explicit:
        return explicit
    local = ROOT / "node_modules" / ".bin" / "grape"
    if local.exists() and shutil.which("node"):
        return str(local)
    return None


def require_grape() -> str:
    """Return the grape binary, skip without it, or fail when REQUIRE_GRAPE=1."""
    found = grape_bin()
    if found is None:
        msg = "real grenache-grape not found (run `npm ci` or set GRAPE_BIN)"
        if os.environ.get("REQUIRE_GRAPE") == "1":
            pytest.fail(msg + "; REQUIRE_GRAPE=1 forbids skipping")
        pytest.skip(msg)
    return found


@dataclass
class GrapeProc:
    """One running grape process (real or localgrape)."""

    dht_port: int
    api_port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


def _api_answers(port: int) -> bool:
    try:
        httpx.post(f"http://127.0.0.1:{port}/lookup", json={"data": "probe"}, timeout=1.0)
    except httpx.HTTPError:
        return False
    return True


@contextmanager
def running_grapes(argv0: list[str], count: int = 2, extra: list[str] | None = None,
                   bind: str | None = "127.0.0.1") -> Iterator[list[GrapeProc]]:
    """Start ``count`` grapes bootstrapped to each other, like the README's two-grape setup.

    ``argv0`` is the command that starts one grape (the real one or
    ``[python, -m, localgrape]``); it must take grape's CLI flags.
    """
    dht_ports = [free_tcp_udp_port() for _ in range(count)]
    api_ports = [free_port() for _ in range(count)]
    procs: list[GrapeProc] = []
    try:
        for i in range(count):
            others = ",".join(f"127.0.0.1:{p}" for j, p in enumerate(dht_ports) if j != i)
            args = [*argv0, "--dp", str(dht_ports[i]), "--aph", str(api_ports[i]),
                    "--bn", others]
            if bind is not None:
                args += ["-b", bind]
            args += extra or []
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(GrapeProc(dht_ports[i], api_ports[i], proc))
        for g in procs:
            wait_until(lambda g=g: _api_answers(g.api_port) or g.proc.poll() is not None,
                       timeout=20, what=f"grape on {g.api_port}")
            if g.proc.poll() is not None:
                err = g.proc.stderr.read().decode() if g.proc.stderr else ""
                pytest.fail(f"grape exited early ({g.proc.returncode}): {err}")
        yield procs
    finally:
        for g in procs:
            g.proc.terminate()
        for g in procs:
            try:
                g.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                g.proc.kill()
                g.proc.wait()
            if g.proc.stderr:
                g.proc.stderr.close()
