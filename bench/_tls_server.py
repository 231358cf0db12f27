"""A do-nothing Peer server, plain or TLS: ``python -m bench._tls_server MODE [CERT KEY]``.

The server side of ``bench_tls``. It answers ``PlaceBid`` at once with a reply the
size of a real Accept, and ``Sync`` with ``SYNC_PAGES`` pages of ``PAGE_EVENTS``
such events, without crossing into trio, so the figures are grpclib's and TLS's, not
the node's; grpclib runs under trio-asyncio, as in a node. MODE is ``plain`` or
``tls`` (then CERT and KEY are PEM files). Prints ``{"port": N}`` once listening;
serves until SIGTERM.
"""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import AsyncIterator

import trio

from bench._baseline_server import BaselineNode, sample_reply
from peer.gen.auction.v1 import PlaceBidReply, SignedBid, SyncReply, SyncRequest
from peer.net import aio
from peer.net.codec import LimitedCodec
from peer.net.rpc import PeerService
from peer.net.server import Server

SYNC_PAGES = 100
PAGE_EVENTS = 500


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    return context


class AnswerAtOnce(PeerService):
    def __init__(self) -> None:
        super().__init__(BaselineNode())
        self.reply = sample_reply()
        assert self.reply.accepted is not None
        self.page = SyncReply(events=[self.reply.accepted] * PAGE_EVENTS)

    async def place_bid(self, message: SignedBid) -> PlaceBidReply:
        return self.reply

    async def sync(self, message: SyncRequest) -> AsyncIterator[SyncReply]:
        for _ in range(SYNC_PAGES):
            yield self.page


async def serve(mode: str, cert: str, key: str) -> None:
    # Under trio-asyncio, as a node runs grpclib; the handlers stay on the asyncio side.
    context = server_context(cert, key) if mode == "tls" else None
    async with aio.open_loop():
        server = Server([AnswerAtOnce()], codec=LimitedCodec())
        await aio.start_server(server, host="127.0.0.1", port=0, ssl=context)
        print(json.dumps({"port": server.port}), flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    args = [*sys.argv[1:], "", "", ""]
    if args[0] not in ("plain", "tls"):
        raise SystemExit("usage: python -m bench._tls_server plain|tls [CERT KEY]")
    trio.run(serve, args[0], args[1], args[2])
