"""Sequential keep-alive lookups per second: localgrape versus the real grape.

``python -m bench.bench_grape`` prints one JSON object; ``python -m bench`` runs it
with the others. Both grapes run as subprocesses started with the same flags
(``--bn '' -b 127.0.0.1``, a lone grape), and are measured in the same run by the
same client: one keep-alive connection, one ``POST /lookup`` at a time, for a
fixed time after a warm-up. The real grape is measured only when Node and
grenache-grape are installed (``node_modules/.bin/grape`` or ``GRAPE_BIN``);
otherwise its figures are null.

Figures, for each grape: sequential keep-alive lookups and announces (requests
per second, median and p99 latency in microseconds) and lookups from 32 concurrent
keep-alive clients; ``ratio_*`` is localgrape / grape, the median over rounds that
alternate between the two grapes.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import threading
import time

from bench._harness import stop_process
from devsupport.grape import grape_bin
from devsupport.ports import free_port

ROUNDS = 6
ROUND_SECONDS = 0.5
WARMUP_SECONDS = 0.5
CLIENTS = 32
NAME = "bench-service"
LOOKUP_ANSWER = b'["127.0.0.1:5001"]'


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


def _loop(port: int, path: bytes, payload: object, seconds: float,
          expect: bytes | None) -> list[float]:
    """Sequential keep-alive requests for ``seconds``; returns each latency."""
    request = _request(json.dumps({"rid": "bench", "data": payload}).encode())
    request = request.replace(b"/lookup", path, 1)
    latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        now = time.perf_counter()
        deadline = now + seconds
        body = b""
        while now < deadline:
            sock.sendall(request)
            body = _read_response(sock, buf)
            after = time.perf_counter()
            latencies.append(after - now)
            now = after
        if expect is not None and body != expect:
            raise RuntimeError(f"unexpected answer {body!r}")
    return latencies


def _concurrent(port: int, clients: int, seconds: float) -> float:
    """Lookups per second from ``clients`` keep-alive connections at once (threads)."""
    counts: list[int] = []

    def one() -> None:
        counts.append(len(_loop(port, b"/lookup", NAME, seconds, LOOKUP_ANSWER)))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def _summary(latencies: list[float], seconds: float) -> dict[str, float]:
    latencies = sorted(latencies)
    return {
        "rps": round(len(latencies) / seconds, 1),
        "median_us": round(latencies[len(latencies) // 2] * 1e6, 1),
        "p99_us": round(latencies[int(len(latencies) * 0.99)] * 1e6, 1),
    }


def _start(argv0: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    dht_port = free_port(socket.SOCK_DGRAM)
    api_port = free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen([*argv0, "--dp", str(dht_port), "--aph", str(api_port),
                             "--bn", "", "-b", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_ready(api_port, proc)
    with socket.create_connection(("127.0.0.1", api_port)) as s:
        body = json.dumps({"data": [NAME, 5001]}).encode()
        s.sendall(_request(body).replace(b"/lookup", b"/announce"))
        _read_response(s, bytearray())
    return proc, api_port


def _measure_all(ports: dict[str, int]) -> dict[str, dict[str, object]]:
    """Every figure for every grape, in interleaved rounds.

    The machine is noisy: measuring one grape for 3 s and then the other lets a
    burst of load from elsewhere decide the ratio. Alternating short rounds and
    taking the median of the per-round ratios keeps both under the same weather.
    """
    lookups: dict[str, list[float]] = {name: [] for name in ports}
    announces: dict[str, list[float]] = {name: [] for name in ports}
    ratios: dict[str, list[float]] = {"lookup": [], "announce": [], "lookup_32": []}
    concurrent: dict[str, list[float]] = {name: [] for name in ports}
    for port in ports.values():  # warm-up
        _loop(port, b"/lookup", NAME, WARMUP_SECONDS, LOOKUP_ANSWER)
    for _ in range(ROUNDS):
        rps: dict[str, dict[str, float]] = {}
        for name, port in ports.items():
            look = _loop(port, b"/lookup", NAME, ROUND_SECONDS, LOOKUP_ANSWER)
            ann = _loop(port, b"/announce", [NAME, 5001], ROUND_SECONDS, None)
            conc = _concurrent(port, CLIENTS, ROUND_SECONDS)
            lookups[name] += look
            announces[name] += ann
            concurrent[name].append(conc)
            rps[name] = {"lookup": len(look) / ROUND_SECONDS,
                         "announce": len(ann) / ROUND_SECONDS, "lookup_32": conc}
        if "grape" in rps:
            for figure in ratios:
                ratios[figure].append(rps["localgrape"][figure] / rps["grape"][figure])
    total = ROUNDS * ROUND_SECONDS
    out: dict[str, dict[str, object]] = {}
    for name in ports:
        out[name] = {
            "lookup": _summary(lookups[name], total),
            "announce": _summary(announces[name], total),
            "lookup_32_clients_rps": round(sum(concurrent[name]) / ROUNDS, 1),
        }
    out["ratio"] = {figure: (round(statistics.median(values), 3) if values else None)
                    for figure, values in ratios.items()}
    return out


def run() -> dict[str, object]:
    """Measure both grapes; the real one's figures are None when it is absent."""
    argv0s = {"localgrape": [sys.executable, "-m", "localgrape"]}
    found = grape_bin()
    if found:
        argv0s["grape"] = [found]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = {}
        for name, argv0 in argv0s.items():
            proc, port = _start(argv0)
            procs.append(proc)
            ports[name] = port
        measured = _measure_all(ports)
    finally:
        for proc in procs:
            stop_process(proc)
    ratio = measured.pop("ratio")
    return {
        "rounds": ROUNDS,
        "round_seconds": ROUND_SECONDS,
        "concurrent_clients": CLIENTS,
        "localgrape": measured["localgrape"],
        "grape": measured.get("grape"),
        "ratio_lookup": ratio["lookup"],
        "ratio_announce": ratio["announce"],
        "ratio_lookup_32_clients": ratio["lookup_32"],
    }


if __name__ == "__main__":
    print(json.dumps(run()))
