"""Bid load generator, run as its own process: ``python -m bench._loadgen '<json args>'``.

It calls ``Peer.PlaceBid`` on one address with grpclib through the same trio-asyncio
bridge the node uses (``peer.net.aio.Bridge``), from ``len(auctions)`` concurrent workers,
each bidding on its own auction with strictly increasing amounts (so no two workers
race and every bid should be accepted). The same client runs against the real seller
and against the baseline server (``bench._baseline_server``), so only the server
differs between the two figures.

Args (JSON object): ``target`` ("host:port"), ``auctions`` ([[author hex, seq], ...],
one per worker), ``mode`` ("closed": as fast as answers come, for ``duration``
seconds after ``warmup_calls`` per worker; "paced": ``count`` bids in total at
``rate`` per second, spread round-robin over the workers), ``start_at`` (optional
``time.monotonic()`` value to start the measured window at, to line up several
generators), ``first_amount``, ``tls`` (call over TLS; default: as nodes started
with this environment serve, ``bench._harness.node_tls``).

Prints one JSON line: ``ok`` (accepted inside the window), ``ok_total`` (all accepted,
warm-up and stragglers included), ``rejected`` (code -> count), ``errors``,
``window_s``, ``per_s``, ``latency`` (p50/p99/max ms) and, in paced mode, ``sent`` (per
bid: auction id, amount, monotonic send and answer times).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio
from grpclib.client import Channel

from bench._harness import node_tls, percentiles
from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.signed_events import make_signed_bid
from peer.gen.auction.v1 import PeerStub, PlaceBidReply, SignedBid
from peer.net import aio
from peer.net.codec import LimitedCodec
from peer.net.tls import client_context

CALL_TIMEOUT = 10.0
MAX_RUN_S = 120.0  # a hard bound on any one generator


class Worker:
    def __init__(self, index: int, key: AuctionKey, first_amount: int) -> None:
        self.identity = Identity.generate(f"Bidder#{index + 1}")
        self.key = key
        self.amount = first_amount
        self.nonce = 0

    def next_bid(self) -> SignedBid:
        self.amount += 1
        self.nonce += 1
        return make_signed_bid(self.identity, self.key, str(self.amount), "USDt", self.nonce,
                               time.time_ns() // 1_000_000)


class Result:
    def __init__(self) -> None:
        self.ok = 0
        self.ok_total = 0
        self.errors = 0
        self.rejected: dict[str, int] = {}
        self.latencies: list[float] = []
        self.sent: list[tuple[str, str, float, float]] = []


async def main(args: dict[str, Any]) -> dict[str, Any]:
    host, _, port = str(args["target"]).rpartition(":")
    keys = [AuctionKey(bytes.fromhex(a), int(s)) for a, s in args["auctions"]]
    workers = [Worker(i, k, int(args.get("first_amount", 1))) for i, k in enumerate(keys)]
    mode = args.get("mode", "closed")
    tls = bool(args.get("tls", node_tls()))
    result = Result()
    async with aio.open_loop() as loop:
        bridge = aio.Bridge(loop)

        async def make_channel() -> Channel:
            return Channel(host, int(port), codec=LimitedCodec(),
                           ssl=client_context() if tls else None)

        channel = await bridge.to_trio(make_channel)
        stub = PeerStub(channel)

        async def place(worker: Worker) -> tuple[SignedBid, PlaceBidReply | None, float]:
            bid = worker.next_bid()
            started = time.monotonic()
            try:
                reply: PlaceBidReply = await bridge.to_trio(stub.place_bid, bid,
                                                            timeout=CALL_TIMEOUT)
            except Exception:
                result.errors += 1
                return bid, None, started
            if reply.accepted is not None:
                result.ok_total += 1
            else:
                code = reply.rejected.code.name if reply.rejected is not None else "EMPTY"
                result.rejected[code] = result.rejected.get(code, 0) + 1
            return bid, reply, started

        try:
            with trio.fail_after(MAX_RUN_S):
                if mode == "closed":
                    window = await _closed(args, workers, place, result)
                else:
                    window = await _paced(args, workers, place, result)
        finally:
            channel.close()
    return {"mode": mode, "workers": len(workers), "ok": result.ok,
            "ok_total": result.ok_total, "errors": result.errors,
            "rejected": result.rejected, "window_s": round(window, 4),
            "per_s": round(result.ok / window, 1) if window > 0 else 0.0,
            "latency": percentiles(result.latencies),
            "sent": result.sent}


async def _wait_start(args: dict[str, Any]) -> float:
    start_at = float(args.get("start_at") or 0.0)
    now = time.monotonic()
    if start_at > now:
        await trio.sleep(start_at - now)
    return max(start_at, now)


async def _closed(args: dict[str, Any], workers: list[Worker], place: Any,
                  result: Result) -> float:
    warmup = int(args.get("warmup_calls", 3))
    duration = float(args["duration"])
    async def warm(worker: Worker) -> None:
        for _ in range(warmup):  # counted in ok_total only
            await place(worker)

    async with trio.open_nursery() as nursery:
        for w in workers:
            nursery.start_soon(warm, w)
    start = await _wait_start(args)
    end = start + duration

    async def loop(worker: Worker) -> None:
        while time.monotonic() < end:
            _, reply, started = await place(worker)
            done = time.monotonic()
            if reply is not None and reply.accepted is not None and done <= end:
                result.ok += 1
                result.latencies.append(done - started)

    async with trio.open_nursery() as nursery:
        for w in workers:
            nursery.start_soon(loop, w)
    return end - start


async def _paced(args: dict[str, Any], workers: list[Worker], place: Any,
                 result: Result) -> float:
    rate = float(args["rate"])
    count = int(args["count"])
    for worker in workers:  # connect and warm up before the window (not measured)
        await place(worker)
    start = await _wait_start(args)

    async def loop(w_index: int, worker: Worker) -> None:
        for i in range(w_index, count, len(workers)):
            due = start + i / rate
            now = time.monotonic()
            if due > now:
                await trio.sleep(due - now)
            _, reply, started = await place(worker)
            done = time.monotonic()
            if reply is not None and reply.accepted is not None:
                result.ok += 1
                result.latencies.append(done - started)
                result.sent.append((worker.key.text, str(worker.amount), started, done))

    async with trio.open_nursery() as nursery:
        for i, w in enumerate(workers):
            nursery.start_soon(loop, i, w)
    return time.monotonic() - start


if __name__ == "__main__":
    print(json.dumps(trio.run(main, json.loads(sys.argv[1]))), flush=True)
