"""The baseline of the bid benchmark: ``python -m bench._baseline_server '{}'``.

A trio process with one trio-asyncio loop (``peer.net.aio.open_loop``) serving the real
``PeerService`` (``peer.net.rpc``) with grpclib and ``LimitedCodec``, exactly as a node
does, but behind it a stub node whose ``on_place_bid`` answers at once with a
precomputed ``PlaceBidReply`` the size of a real one (an ``Accept`` event, signed, that
carries a real signed bid). So a call pays grpclib, the codec and both bridge
crossings (asyncio -> trio -> asyncio) and nothing else: no validation, no signing,
no fsync, no fan-out.

Prints ``{"port": N, "reply_bytes": M}`` once listening; serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio

from devsupport.serving import QuietPeer, serving, until_terminated
from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.signed_events import make_signed_bid, sign_event
from peer.gen.auction.v1 import Accept, Event, PlaceBidReply, SignedBid
from peer.net import aio
from peer.net.rpc import PeerService


def sample_reply() -> PlaceBidReply:
    """A ``PlaceBidReply`` as large as the seller's answer to a typical bid."""
    seller = Identity.generate("Seller#1")
    bidder = Identity.generate("Bidder#1")
    key = AuctionKey(seller.node_id, 12)
    bid = make_signed_bid(bidder, key, "1234", "USDt", 1234, time.time_ns() // 1_000_000)
    event = Event(author=seller.node_id, seq=1234, prev=b"\x01" * 32,
                  time_ms=time.time_ns() // 1_000_000, author_name=seller.name,
                  accept=Accept(bid=bid))
    return PlaceBidReply(accepted=sign_event(seller, event))


class BaselineNode(QuietPeer):
    """Answers ``PlaceBid`` with a fixed reply; nothing else is used by the benchmark."""

    def __init__(self) -> None:
        self.reply = sample_reply()
        self.calls = 0

    async def on_place_bid(self, bid: SignedBid) -> PlaceBidReply:
        self.calls += 1
        return self.reply


async def main(args: dict[str, Any]) -> None:
    node = BaselineNode()
    async with aio.open_loop(), serving([PeerService(node)], host="127.0.0.1",
                                        port=int(args.get("port", 0))) as server:
        print(json.dumps({"port": server.port, "reply_bytes": len(bytes(node.reply))}),
              flush=True)
        await until_terminated()


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}"))
