"""Serving gRPC services as a node does, for stand-ins: benchmark baselines, test impostors.

- :class:`QuietPeer`: what ``peer.net.rpc.PeerService`` calls on a node, each answered
  with an empty reply; a stand-in overrides only what it is about.
- :class:`QuietMeshHooks`: what a ``peer.net.mesh.Mesh`` calls on its node (no heads,
  peers up and down ignored), for a mesh used on its own.
- :func:`serving`: grpclib services on the asyncio side of a trio-asyncio loop with the
  node's ``LimitedCodec``, started, and stopped (even when cancelled) on the way out.
- :func:`until_terminated`: waits for SIGTERM or SIGINT, how the helper processes of
  the benchmarks are told to stop.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from ssl import SSLContext
from typing import Any

import trio

from peer.gen.auction.v1 import (
    Head,
    HelloReply,
    HelloRequest,
    LeaveRequest,
    PlaceBidReply,
    ProveReply,
    ProveRequest,
    PushReply,
    PushRequest,
    SignedBid,
    SyncReply,
    SyncRequest,
)
from peer.net import aio
from peer.net.codec import LimitedCodec
from peer.net.mesh import PeerLink
from peer.net.server import Server

__all__ = ["QuietMeshHooks", "QuietPeer", "serving", "until_terminated"]


class QuietPeer:
    """A node as ``PeerService`` sees it, that answers every call with nothing."""

    async def on_hello(self, request: HelloRequest, reached_at: object,
                       binding: bytes = b"") -> HelloReply:
        return HelloReply()

    async def on_prove(self, request: ProveRequest, remote: object) -> ProveReply:
        return ProveReply()

    async def on_place_bid(self, bid: SignedBid) -> PlaceBidReply:
        return PlaceBidReply()

    async def on_push(self, request: PushRequest) -> PushReply:
        return PushReply()

    async def on_sync_page(self, request: SyncRequest, cursor: tuple[int, int] | None
                           ) -> tuple[SyncReply, tuple[int, int] | None]:
        return SyncReply(), None

    async def on_leave(self, request: LeaveRequest) -> bool:
        return False


class QuietMeshHooks:
    """A node as its ``Mesh`` sees it, that holds nothing and ignores its peers."""

    def heads(self) -> list[Head]:
        return []

    def peer_up(self, link: PeerLink) -> None:
        pass

    def peer_down(self, link: PeerLink, reason: str) -> None:
        pass


@asynccontextmanager
async def serving(services: Sequence[Any], *, ssl: SSLContext | None = None,
                  **address: Any) -> AsyncIterator[Server]:
    """Serve ``services`` at ``address`` (``host``/``port``, or ``path``), over TLS with
    ``ssl``, until the block ends. Call it inside ``peer.net.aio.open_loop()``:
    grpclib's ``Server`` takes the running asyncio loop when it is made."""
    server = Server(list(services), codec=LimitedCodec(), ssl=ssl)
    await aio.start_server(server, **address)
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await aio.stop_server(server)


async def until_terminated() -> None:
    """Return once the process gets SIGTERM or SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return
