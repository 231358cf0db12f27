"""Sequential keep-alive lookups per second: localgrape versus the real grape.

``python -m bench.bench_grape`` prints one JSON object; ``python -m bench`` runs it
with the others. Both grapes run as subprocesses started with the same flags
(``--bn '' -b 127.0.0.1``, a lone grape), and are measured in the same run by the
same client: one keep-alive connection, one ``POST /lookup`` at a time, for a
fixed time after a warm-up. The real grape is measured only when Node and
grenache-grape are installed (``node_modules/.bin/grape`` or ``GRAPE_BIN``);
otherwise its figures are null.

Figures: ``localgrape_rps`` and ``grape_rps`` (requests per second),
``ratio`` (localgrape / grape), and the median and p99 latency in microseconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 3.0
WARMUP_SECONDS = 0.5
NAME = "bench-service"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _grape_bin() -> str | None:
    explicit = os.environ.get("GRAPE_BIN")
    if explicit:
        return explicit
    local = ROOT / "node_modules" / ".bin" / "grape"
    if local.exists() and shutil.which("node"):
        return str(local)
    return None


def _request(body: bytes) -> bytes:
    return (b"POST /lookup HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def _read_response(sock: socket.socket, buf: bytearray) -> bytes:
    """Read one Content-Length framed response from ``sock`` (extra bytes stay in buf)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end])
            start = head.lower().find(b"content-length:")
            length = int(head[start + 15:].split(b"\r\n", 1)[0]) if start >= 0 else 0
            total = end + 4 + length
            if len(buf) >= total:
                body = bytes(buf[end + 4:total])
                del buf[:total]
                return body
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("grape closed the connection")
        buf += chunk


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"grape exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(_request(b'{"data":"probe"}'))
                _read_response(s, bytearray())
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"grape on {port} did not answer within {timeout}s")


def _measure(port: int) -> dict[str, float]:
    request = _request(json.dumps({"rid": "bench", "data": NAME}).encode())
    latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        warm_until = time.perf_counter() + WARMUP_SECONDS
        while time.perf_counter() < warm_until:
            sock.sendall(request)
            _read_response(sock, buf)
        started = time.perf_counter()
        deadline = started + SECONDS
        now = started
        while now < deadline:
            sock.sendall(request)
            body = _read_response(sock, buf)
            after = time.perf_counter()
            latencies.append(after - now)
            now = after
        elapsed = now - started
        if body != b'["127.0.0.1:5001"]':
            raise RuntimeError(f"unexpected lookup answer {body!r}")
    latencies.sort()
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "median_us": round(latencies[len(latencies) // 2] * 1e6, 1),
        "p99_us": round(latencies[int(len(latencies) * 0.99)] * 1e6, 1),
    }


def _run_one(argv0: list[str]) -> dict[str, float]:
    dht_port = _free_port(socket.SOCK_DGRAM)
    api_port = _free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen([*argv0, "--dp", str(dht_port), "--aph", str(api_port),
                             "--bn", "", "-b", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(api_port, proc)
        with socket.create_connection(("127.0.0.1", api_port)) as s:
            body = json.dumps({"data": [NAME, 5001]}).encode()
            s.sendall(_request(body).replace(b"/lookup", b"/announce"))
            _read_response(s, bytearray())
        return _measure(api_port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run() -> dict[str, object]:
    """Measure both grapes; the real one's figures are None when it is absent."""
    local = _run_one([sys.executable, "-m", "localgrape"])
    grape_bin = _grape_bin()
    real = _run_one([grape_bin]) if grape_bin else None
    return {
        "seconds_per_grape": SECONDS,
        "localgrape_rps": local["rps"],
        "localgrape_median_us": local["median_us"],
        "localgrape_p99_us": local["p99_us"],
        "grape_rps": real["rps"] if real else None,
        "grape_median_us": real["median_us"] if real else None,
        "grape_p99_us": real["p99_us"] if real else None,
        "ratio": round(local["rps"] / real["rps"], 3) if real else None,
    }


if __name__ == "__main__":
    print(json.dumps(run()))
