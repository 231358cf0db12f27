"""A PushStream receiver that does no work: ``python -m bench._transport_server MODE``.

The floor of ``bench_transport``. Every mode answers each ``PushRequest`` with an
empty ``PushReply`` at once; what differs is the stack underneath:

- ``asyncio``: grpclib on a plain asyncio loop (``asyncio.run``), no trio at all.
- ``trio_asyncio``: grpclib on a trio-asyncio loop inside ``trio.run``, as a node
  runs it, the handler staying on the asyncio side.
- ``crossing``: as ``trio_asyncio``, but the real ``peer.net.rpc.PeerService`` handles
  the stream, crossing into trio for every message (``bench._baseline_server``'s
  do-nothing node behind it): a node's whole receive path minus the node's work.

Prints ``{"port": N}`` once listening; serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import trio

from bench._baseline_server import BaselineNode
from devsupport.serving import serving
from peer.gen.auction.v1 import PushReply, PushRequest
from peer.net import aio
from peer.net.codec import LimitedCodec
from peer.net.rpc import PeerService
from peer.net.server import Server

MODES = ("asyncio", "trio_asyncio", "crossing")


class AnswerAtOnce(PeerService):
    """``PushStream`` replies without leaving the asyncio side."""

    async def push_stream(self, messages: AsyncIterator[PushRequest]
                          ) -> AsyncIterator[PushReply]:
        async for _ in messages:
            yield PushReply()


async def _plain_asyncio() -> None:
    server = Server([AnswerAtOnce(BaselineNode())], codec=LimitedCodec())
    await server.start("127.0.0.1", 0)
    print(json.dumps({"port": server.port}), flush=True)
    await asyncio.Event().wait()


async def _under_trio(mode: str) -> None:
    node = BaselineNode()
    async with aio.open_loop():
        service = PeerService(node) if mode == "crossing" else AnswerAtOnce(node)
        async with serving([service], host="127.0.0.1", port=0) as server:
            print(json.dumps({"port": server.port}), flush=True)
            await trio.sleep_forever()


def main(mode: str) -> None:
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "asyncio":
        asyncio.run(_plain_asyncio())
    else:
        trio.run(_under_trio, mode)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
