"""What TLS on the public port would cost: the same calls, plain and over TLS 1.3.

``python -m bench.bench_tls`` prints one JSON object. A do-nothing server
(``bench._tls_server``, its own process) answers, and this process calls it; both run
grpclib under trio-asyncio, as a node does:

- ``bid``: ``PlaceBid`` one call in flight (the bid path), with a reply the size of a
  real Accept: round trip and the server's CPU per call;
- ``bids_16``: 16 calls in flight: calls per second;
- ``sync``: one ``Sync`` stream of 50,000 Accept-sized events: events per second and
  the server's CPU per event;
- ``connect``: a new connection and its first call (the TLS handshake is paid here).

The certificate is a self-signed ECDSA P-256 one made by the ``openssl`` command (the
benchmark is skipped without it). Binding it to a node's Ed25519 key the way libp2p
does (an extension holding the node key's signature over the certificate's key)
would add one Ed25519 signature at start and one verification per connection
(about 60 us): nothing per call. ``ratio`` divides TLS by plain, same run.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from grpclib.client import Channel

from bench._baseline_server import sample_reply
from bench._harness import PYTHON, ROOT, log, process_cpu_s, read_json_line, stop_process
from bench._tls_server import PAGE_EVENTS, SYNC_PAGES
from peer.gen.auction.v1 import PeerStub, SignedBid, SyncRequest
from peer.net import aio
from peer.net.codec import LimitedCodec

BIDS = 2000
CONCURRENT = 16
CONCURRENT_BIDS = 4000
CONNECTS = 100


def _make_certificate(directory: Path) -> tuple[str, str]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=node",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


def _client_context() -> ssl.SSLContext:
    # No CA: a node's certificate would be checked against the node id it is bound to.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


def _channel(port: int, tls: bool) -> Channel:
    return Channel("127.0.0.1", port, codec=LimitedCodec(),
                   ssl=_client_context() if tls else None)


async def _measure(port: int, pid: int, tls: bool) -> dict[str, float]:
    bid = SignedBid(bid=b"\x01" * 120, signature=b"\x02" * 64)
    channel = _channel(port, tls)
    stub = PeerStub(channel)
    try:
        for _ in range(100):  # warm up: connection, codecs
            await stub.place_bid(bid)
        cpu, started = process_cpu_s(pid), time.perf_counter()
        for _ in range(BIDS):
            await stub.place_bid(bid)
        elapsed, cpu = time.perf_counter() - started, process_cpu_s(pid) - cpu
        result = {"bid_round_trip_us": elapsed / BIDS * 1e6,
                  "bid_server_cpu_us": cpu / BIDS * 1e6}

        async def worker(count: int) -> None:
            for _ in range(count):
                await stub.place_bid(bid)

        started = time.perf_counter()
        await asyncio.gather(*(worker(CONCURRENT_BIDS // CONCURRENT)
                               for _ in range(CONCURRENT)))
        result["bids_16_per_s"] = CONCURRENT_BIDS / (time.perf_counter() - started)

        cpu, started, events = process_cpu_s(pid), time.perf_counter(), 0
        async for page in stub.sync(SyncRequest()):
            events += len(page.events)
        elapsed, cpu = time.perf_counter() - started, process_cpu_s(pid) - cpu
        assert events == SYNC_PAGES * PAGE_EVENTS
        result["sync_events_per_s"] = events / elapsed
        result["sync_server_cpu_us_per_event"] = cpu / events * 1e6
    finally:
        channel.close()

    started = time.perf_counter()
    for _ in range(CONNECTS):
        fresh = _channel(port, tls)
        try:
            await PeerStub(fresh).place_bid(bid)
        finally:
            fresh.close()
    result["connect_and_first_call_ms"] = (time.perf_counter() - started) / CONNECTS * 1e3
    return result


async def _under_trio(port: int, pid: int, tls: bool) -> dict[str, float]:
    # The client as a node runs it: grpclib on a trio-asyncio loop.
    async with aio.open_loop() as loop:
        return await aio.Bridge(loop).to_trio(_measure, port, pid, tls)


def _one_mode(mode: str, cert: str, key: str) -> dict[str, float]:
    proc = subprocess.Popen([PYTHON, "-m", "bench._tls_server", mode, cert, key], cwd=ROOT,
                            stdout=subprocess.PIPE)
    try:
        port = int(read_json_line(proc)["port"])
        return trio.run(_under_trio, port, proc.pid, mode == "tls")
    finally:
        stop_process(proc)


def run() -> dict[str, Any]:
    if shutil.which("openssl") is None:
        return {"skipped": "no openssl command to make a certificate"}
    assert sample_reply().accepted is not None
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        cert, key = _make_certificate(Path(tmp))
        results: dict[str, Any] = {}
        for mode in ("plain", "tls"):
            log(f"bench_tls: {mode}")
            results[mode] = _one_mode(mode, cert, key)
    results["ratio"] = {name: results["tls"][name] / results["plain"][name]
                        for name in results["plain"]}
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
