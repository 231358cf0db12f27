"""The bare relay the user-path benchmark compares against: the bid path's shape, no node.

``python -m bench._relay '{"role": "sink", "db": PATH}'`` and
``python -m bench._relay '{"role": "middle", "socket": PATH, "sink": "127.0.0.1:PORT"}'``.

Built from the node's own libraries (trio-asyncio via ``peer.net.aio``, grpclib, the
generated messages, ``LimitedCodec``), in the node's shape, with nothing of its logic:

- the **middle** serves ``Control.Bid`` on a Unix socket; each call makes one
  ``Peer.PlaceBid`` call over TCP to the sink (a fixed, real-size signed bid) and
  answers a fixed ``ControlReply`` the size of a node's (accepted bid + summary).
- the **sink** serves ``Peer.PlaceBid``: one SQLite insert per call, group-committed
  (whatever arrived while the previous commit ran goes in the next transaction) on a
  writer thread, WAL with ``synchronous=FULL`` as the node's store, then a fixed
  ``PlaceBidReply`` the size of a seller's.

Both run grpclib on the asyncio side of a trio-asyncio loop, as a node does, but never
cross into trio. Each prints one JSON line once listening (``{"port": N}`` for the
sink) and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import sys
import threading
import time
from typing import Any

import trio
from grpclib.client import Channel

from bench._baseline_server import sample_reply
from devsupport.serving import serving, until_terminated
from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.signed_events import make_signed_bid
from peer.gen.auction.v1 import (
    AuctionState,
    AuctionView,
    BidRequest,
    BidView,
    ControlBase,
    ControlReply,
    PeerBase,
    PeerStub,
    PlaceBidReply,
    SignedBid,
)
from peer.net import aio
from peer.net.codec import LimitedCodec


class GroupCommit:
    """One writer thread; every insert waits for the transaction that holds it."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS bids (seq INTEGER PRIMARY KEY, data BLOB)")
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writing = False
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._writer, name="relay-writer", daemon=True).start()

    async def insert(self, data: bytes) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((data, done))
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().create_task(self._drain())
        await done

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                written: asyncio.Future[None] = loop.create_future()
                # A plain thread, woken by a queue: trio-asyncio's run_in_executor
                # takes only its own executor, which crosses into trio.
                self._jobs.put(([data for data, _ in batch], loop, written))
                try:
                    await written
                except Exception as exc:
                    for _, done in batch:
                        done.set_exception(exc)
                else:
                    for _, done in batch:
                        done.set_result(None)
        finally:
            self._writing = False

    def _writer(self) -> None:
        while True:
            rows, loop, written = self._jobs.get()
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT INTO bids (data) VALUES (?)",
                                     [(r,) for r in rows])
                self._db.execute("COMMIT")
            except Exception as exc:
                loop.call_soon_threadsafe(written.set_exception, exc)
            else:
                loop.call_soon_threadsafe(written.set_result, None)


class Sink(PeerBase):  # type: ignore[misc]  # generated base
    def __init__(self, store: GroupCommit) -> None:
        self.store = store
        self.reply = sample_reply()

    async def place_bid(self, message: SignedBid) -> PlaceBidReply:
        await self.store.insert(message.bid + message.signature)
        return self.reply


def _control_reply() -> tuple[SignedBid, ControlReply]:
    seller = Identity.generate("Node#1")
    bidder = Identity.generate("Node#2")
    key = AuctionKey(seller.node_id, 12)
    now = time.time_ns() // 1_000_000
    bid = make_signed_bid(bidder, key, "1234", "USDt", 1234, now)
    accepted = BidView(bidder=bidder.node_id, bidder_name=bidder.name, amount="1234",
                       currency="USDt", time_ms=now)
    view = AuctionView(id=key.text, seller=seller.node_id, seller_name=seller.name,
                       item="Lot#12", start_amount="1", currency="USDt",
                       state=AuctionState.OPEN, bids=[accepted], opened_ms=now,
                       bid_count=1234, first_bid_index=1233, best=accepted)
    return bid, ControlReply(auction=view, accepted_bid=accepted)


class Middle(ControlBase):  # type: ignore[misc]  # generated base
    def __init__(self, sink: str) -> None:
        host, _, port = sink.rpartition(":")
        self._address = (host, int(port))
        self._stub: PeerStub | None = None
        self.bid_to_send, self.reply = _control_reply()

    async def bid(self, message: BidRequest) -> ControlReply:
        if self._stub is None:  # made here: grpclib takes the running asyncio loop
            self._stub = PeerStub(Channel(*self._address, codec=LimitedCodec()))
        answer: PlaceBidReply = await self._stub.place_bid(self.bid_to_send, timeout=30.0)
        if answer.accepted is None:
            raise RuntimeError("the sink did not accept")
        return self.reply


async def main(args: dict[str, Any]) -> None:
    async with aio.open_loop():
        if args["role"] == "sink":
            service: Any = Sink(GroupCommit(str(args["db"])))
            address: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
        else:
            service = Middle(str(args["sink"]))
            address = {"path": str(args["socket"])}
        async with serving([service], **address) as server:
            ready = {"port": server.port} if args["role"] == "sink" else {"ready": True}
            print(json.dumps(ready), flush=True)
            await until_terminated()


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]))
