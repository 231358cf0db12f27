"""Bids through a node's Control socket, as a user's client makes them, in its own process.

``python -m bench._control_loadgen '<json args>'``. One grpclib channel over the Unix
socket ``socket`` on plain asyncio (as the CLI runs), ``len(auctions)`` concurrent
workers, each bidding on its own auction (the strings a user types) with strictly
increasing amounts, so every bid should be accepted. The same client runs against a
bidder node and against the bare relay (``bench._relay``): only the server side differs.

Args (JSON object): ``socket``, ``auctions``, ``first_amount`` and ``mode``:

- ``"closed"``: as fast as answers come, for ``duration`` seconds after
  ``warmup_calls`` per worker, starting at ``start_at`` (a ``time.monotonic()`` value)
  if given. Prints ``ok`` (accepted in the window), ``per_s``, ``latency``, ``errors``,
  ``rejected`` (code -> count), ``window_s``.
- ``"sequential"``: one worker, ``count`` bids one after the other on ``auctions[0]``.
  after ``warmup_calls`` (default 10) not counted. Prints ``start`` and ``done_at``
  (the ``time.monotonic()`` before the first and of each accepted answer, in order),
  ``reply_bytes`` (the size of the first and the last reply), ``errors`` and
  ``rejected``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from grpclib.client import Channel

from bench._harness import percentiles
from peer.gen.auction.v1 import BidRequest, ControlReply, ControlStub
from peer.net.codec import LimitedCodec

CALL_TIMEOUT = 30.0
MAX_RUN_S = 1800.0  # a hard bound on any one generator (10,000 slow bids included)


class _Tally:
    def __init__(self) -> None:
        self.errors = 0
        self.rejected: dict[str, int] = {}

    def accepted(self, reply: ControlReply | None) -> bool:
        if reply is None:
            self.errors += 1
            return False
        if reply.rejected is None and reply.accepted_bid is not None:
            return True
        code = reply.rejected.code.name if reply.rejected is not None else "NO_ACCEPTED_BID"
        self.rejected[code] = self.rejected.get(code, 0) + 1
        return False


async def _bid(stub: ControlStub, auction: str, amount: int) -> ControlReply | None:
    try:
        reply: ControlReply = await stub.bid(BidRequest(auction=auction, amount=str(amount)),
                                             timeout=CALL_TIMEOUT)
    except Exception:
        return None
    return reply


async def _closed(stub: ControlStub, args: dict[str, Any], tally: _Tally) -> dict[str, Any]:
    auctions: list[str] = list(args["auctions"])
    amounts = [int(args.get("first_amount", 1))] * len(auctions)
    warmup = int(args.get("warmup_calls", 3))

    async def one(worker: int) -> tuple[ControlReply | None, float]:
        amounts[worker] += 1
        started = time.monotonic()
        return await _bid(stub, auctions[worker], amounts[worker]), started

    async def warm(worker: int) -> None:
        for _ in range(warmup):
            tally.accepted((await one(worker))[0])

    await asyncio.gather(*(warm(w) for w in range(len(auctions))))
    start_at = float(args.get("start_at") or 0.0)
    if start_at > time.monotonic():
        await asyncio.sleep(start_at - time.monotonic())
    start = time.monotonic()
    end = start + float(args["duration"])
    latencies: list[float] = []

    async def loop(worker: int) -> None:
        while time.monotonic() < end:
            reply, started = await one(worker)
            done = time.monotonic()
            if tally.accepted(reply) and done <= end:
                latencies.append(done - started)

    await asyncio.gather(*(loop(w) for w in range(len(auctions))))
    window = end - start
    return {"ok": len(latencies), "window_s": round(window, 4),
            "per_s": round(len(latencies) / window, 1), "latency": percentiles(latencies)}


async def _sequential(stub: ControlStub, args: dict[str, Any], tally: _Tally
                      ) -> dict[str, Any]:
    auction = str(args["auctions"][0])
    amount = int(args.get("first_amount", 1))
    for _ in range(int(args.get("warmup_calls", 10))):  # connect, warm caches: not counted
        amount += 1
        tally.accepted(await _bid(stub, auction, amount))
    done_at: list[float] = []
    sizes: list[int] = []
    start = time.monotonic()
    for _ in range(int(args["count"])):
        amount += 1
        reply = await _bid(stub, auction, amount)
        if tally.accepted(reply):
            done_at.append(time.monotonic())
            assert reply is not None
            if not sizes:
                sizes.append(len(bytes(reply)))
            last = reply
    if done_at:
        sizes.append(len(bytes(last)))
    return {"start": start, "done_at": done_at, "reply_bytes": sizes}


async def main(args: dict[str, Any]) -> dict[str, Any]:
    channel = Channel(path=str(args["socket"]), codec=LimitedCodec())
    stub = ControlStub(channel)
    tally = _Tally()
    try:
        async with asyncio.timeout(MAX_RUN_S):
            if args.get("mode", "closed") == "sequential":
                out = await _sequential(stub, args, tally)
            else:
                out = await _closed(stub, args, tally)
    finally:
        channel.close()
    return {**out, "errors": tally.errors, "rejected": tally.rejected}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
