"""Soak: hostile clients beside honest bids on a real seller process, bounded in time.

For ``SOAK_SECONDS`` the seller's only grape answers thousands of new dead addresses
per lookup, one client keeps declaring 2^31-1-byte messages, one floods PlaceBid and
one floods Sync; meanwhile an honest bidder's bids must keep being accepted, the
control socket must keep answering, and the seller's memory must stay within
``RSS_BOUND`` of where it was before the attack.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.exceptions import StreamTerminatedError

from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.signed_events import make_signed_bid
from peer.gen.auction.v1 import ControlStub, PeerStub, StatusRequest, SyncRequest
from peer.net.codec import LimitedCodec
from tests.e2e.harness import NodeProc, child_env, nodes
from tests.h2_attacker import MiB, declare_huge, rss_bytes
from tests.support import ROOT, close_now, node_ssl, node_tls

SOAK_SECONDS = 30.0
RSS_BOUND = 50 * MiB


@pytest.fixture
def address_grape() -> Iterator[str]:
    """A grape answering 20,000 new dead (loopback, closed-port) addresses per lookup."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.hostile_grape", "addresses"],
                            stdout=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


class Soak:
    def __init__(self, seller: NodeProc, stop: float) -> None:
        assert seller.proc is not None
        self.seller = seller
        self.pid = seller.proc.pid
        self.port = int(seller.ready["port"])
        self.key = AuctionKey(bytes.fromhex(seller.ready["node_id"]), 1)
        self.stop = stop
        self.peak_rss = 0
        self.huge_refused = 0
        self.huge_sent = 0
        self.huge_errors = 0
        self.flood = {"bids": 0, "syncs": 0, "refused": 0, "timed out": 0, "cut": 0}
        self.honest_latencies: list[float] = []
        self.status_latencies: list[float] = []

    def declare_huge_forever(self) -> None:
        while time.monotonic() < self.stop:
            try:
                result = declare_huge(self.port, max_send=64 * MiB, timeout=10, tls=node_tls())
            except OSError:  # reset by the node (connection caps): try again
                self.huge_errors += 1
                continue
            self.huge_sent += result.sent
            self.huge_refused += result.grpc_status == "8"

    def sample_rss(self) -> None:
        while time.monotonic() < self.stop:
            self.peak_rss = max(self.peak_rss, rss_bytes(self.pid))
            time.sleep(0.2)

    async def flood_bids(self) -> None:
        mallory = Identity.generate("Mallory")
        too_low = make_signed_bid(mallory, self.key, "1", "USDt", 1, 1)
        async with _channel(self.port) as channel:
            await asyncio.gather(*(self._flood_one(
                lambda: PeerStub(channel).place_bid(too_low, timeout=10), "bids")
                for _ in range(60)))

    async def flood_syncs(self) -> None:
        async def sync(stub: PeerStub) -> None:
            async for _ in stub.sync(SyncRequest(heads=[]), timeout=10):
                pass

        async with _channel(self.port) as channel:
            await asyncio.gather(*(self._flood_one(lambda: sync(PeerStub(channel)), "syncs")
                                   for _ in range(30)))

    async def _flood_one(self, call: object, kind: str) -> None:
        while time.monotonic() < self.stop:
            try:
                await call()  # type: ignore[operator]
                self.flood[kind] += 1
            except GRPCError:
                self.flood["refused"] += 1
            except TimeoutError:  # an overloaded seller may leave a flooder waiting
                self.flood["timed out"] += 1
            except (StreamTerminatedError, ConnectionError):  # cut after many refusals
                self.flood["cut"] += 1

    async def honest_bids(self) -> None:
        alice = Identity.generate("Alice")
        amount = 75
        async with _channel(self.port) as channel:
            while time.monotonic() < self.stop:
                bid = make_signed_bid(alice, self.key, str(amount), "USDt", amount, amount)
                started = time.monotonic()
                reply = await PeerStub(channel).place_bid(bid, timeout=20)
                self.honest_latencies.append(time.monotonic() - started)
                assert reply.accepted is not None, reply
                amount += 1
                await asyncio.sleep(0.25)

    async def ask_status(self) -> None:
        socket_path = str(self.seller.ready["control_socket"])
        channel = Channel(path=socket_path, codec=LimitedCodec())
        try:
            while time.monotonic() < self.stop:
                started = time.monotonic()
                await ControlStub(channel).status(StatusRequest(), timeout=20)
                self.status_latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.5)
        finally:
            close_now(channel)


class _channel:  # used as `async with _channel(port)`
    def __init__(self, port: int) -> None:
        self.port = port

    async def __aenter__(self) -> Channel:
        self.channel = Channel("127.0.0.1", self.port, codec=LimitedCodec(),
                               ssl=node_ssl())
        return self.channel

    async def __aexit__(self, *exc: object) -> None:
        close_now(self.channel)


def test_hostile_clients_beside_honest_bids(tmp_path: Path, address_grape: str) -> None:
    with nodes(tmp_path, [address_grape], ["Client#1"]) as (seller,):
        assert seller.cli("open", "Pic#1", "75").code == 0
        assert seller.proc is not None
        # Warm up every path once (lookups have started filling the address set).
        declare_huge(int(seller.ready["port"]), max_send=MiB, tls=node_tls())
        time.sleep(2)
        idle = rss_bytes(seller.proc.pid)

        soak = Soak(seller, time.monotonic() + SOAK_SECONDS)
        threads = [threading.Thread(target=soak.declare_huge_forever, daemon=True),
                   threading.Thread(target=soak.sample_rss, daemon=True)]
        for thread in threads:
            thread.start()

        async def clients() -> None:
            await asyncio.gather(soak.flood_bids(), soak.flood_syncs(), soak.honest_bids(),
                                 soak.ask_status())

        asyncio.run(clients())
        for thread in threads:
            thread.join(timeout=30)
        after = rss_bytes(seller.proc.pid)
        status = seller.cli("status", "--json")

    print(f"idle {idle / MiB:.1f} MiB, peak {soak.peak_rss / MiB:.1f} MiB, after "
          f"{after / MiB:.1f} MiB; flood {soak.flood}; huge refused {soak.huge_refused}; "
          f"honest bids {len(soak.honest_latencies)}, max latency "
          f"{max(soak.honest_latencies):.2f} s; status max {max(soak.status_latencies):.2f} s")
    # The attacks happened and were refused.
    assert soak.huge_refused >= 5 and soak.huge_sent < soak.huge_refused * 4 * MiB
    assert soak.flood["refused"] > 0
    # Honest bids kept being accepted, all along.
    assert len(soak.honest_latencies) >= SOAK_SECONDS / 3, soak.honest_latencies
    assert max(soak.honest_latencies) < 5.0, soak.honest_latencies
    assert max(soak.status_latencies) < 5.0, soak.status_latencies
    # Memory stayed bounded, during and after.
    assert soak.peak_rss - idle < RSS_BOUND, (idle, soak.peak_rss)
    assert after - idle < RSS_BOUND, (idle, after)
    assert status.code == 0
    assert status.json()["unanswered_addresses"] <= 1000
