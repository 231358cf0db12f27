"""A peer flooding a seller with bids is slowed, then cut, while an honest bidder's bids
keep being accepted promptly (a real seller process, two gRPC connections)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import StreamTerminatedError

from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.signed_events import make_signed_bid
from peer.gen.auction.v1 import PeerStub
from peer.net.codec import LimitedCodec
from tests.e2e.harness import nodes
from tests.support import close_now, node_ssl, running_grapes

RATE = 20  # bids/s per connection for this test (the default is 500)
FLOOD_SECONDS = 4.0


@pytest.fixture
def one_grape() -> Iterator[str]:
    with running_grapes([sys.executable, "-m", "localgrape"], count=1) as grapes:
        yield grapes[0].url


async def _flood(port: int, key: AuctionKey, stop: float) -> tuple[int, int, int]:
    """Bid over one channel, 60 at a time, until ``stop``; (answered, refused, cut).

    A cut connection is replaced by grpclib with a new one on the next call."""
    mallory = Identity.generate("Mallory")
    too_low = make_signed_bid(mallory, key, "1", "USDt", 1, 1)  # costs a signature check
    channel = Channel("127.0.0.1", port, codec=LimitedCodec(), ssl=node_ssl())
    answered = refused = cut = 0

    async def worker() -> None:
        nonlocal answered, refused, cut
        while time.monotonic() < stop:
            try:
                await PeerStub(channel).place_bid(too_low, timeout=10)
                answered += 1
            except GRPCError as exc:
                assert exc.status == Status.RESOURCE_EXHAUSTED, exc
                refused += 1
            except (StreamTerminatedError, ConnectionError):
                cut += 1

    try:
        await asyncio.gather(*(worker() for _ in range(60)))
    finally:
        close_now(channel)
    return answered, refused, cut


async def _honest(port: int, key: AuctionKey, stop: float) -> list[float]:
    """Bid higher and higher from another connection, 5 a second; each bid's latency."""
    alice = Identity.generate("Alice")
    channel = Channel("127.0.0.1", port, codec=LimitedCodec(), ssl=node_ssl())
    latencies: list[float] = []
    try:
        amount = 75
        while time.monotonic() < stop:
            bid = make_signed_bid(alice, key, str(amount), "USDt", amount, amount)
            started = time.monotonic()
            reply = await PeerStub(channel).place_bid(bid, timeout=10)
            latencies.append(time.monotonic() - started)
            assert reply.accepted is not None, reply
            amount += 1
            await asyncio.sleep(0.2)
    finally:
        close_now(channel)
    return latencies


def test_a_flooding_peer_is_slowed_and_cut_while_honest_bids_go_through(
        tmp_path: Path, one_grape: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUCTION_PEER_BID_RATE", str(RATE))
    monkeypatch.setenv("AUCTION_PEER_BID_BURST", str(RATE))
    with nodes(tmp_path, [one_grape], ["Client#1"]) as (seller,):
        port = int(seller.ready["port"])
        assert seller.cli("open", "Pic#1", "75").code == 0
        key = AuctionKey(bytes.fromhex(seller.ready["node_id"]), 1)

        async def main() -> tuple[tuple[int, int, int], list[float]]:
            stop = time.monotonic() + FLOOD_SECONDS
            flood, honest = await asyncio.gather(_flood(port, key, stop),
                                                 _honest(port, key, stop))
            return flood, honest

        (answered, refused, cut), latencies = asyncio.run(main())

    # The flooder got its rate and a burst per connection, no more (plus what was
    # already waiting when the flood stopped); the rest was refused, and after 100
    # refusals its connection was cut.
    connections = 1 + cut  # a cut fails at least one call in flight
    assert answered <= RATE * connections + RATE * (FLOOD_SECONDS + 2.5), (answered, cut)
    assert refused >= 100 and cut > 0, (answered, refused, cut)
    # Every honest bid was accepted, none waited behind the flood.
    assert len(latencies) >= FLOOD_SECONDS
    assert max(latencies) < 2.0, latencies
