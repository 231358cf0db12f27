"""grpclib services: ``Peer`` (public port) and ``Control`` (local Unix socket).

Handlers run on asyncio (grpclib's world) and only translate: each one crosses
into trio through ``peer.net.aio.from_trio`` and calls the node, which owns all
state. Expected refusals travel in the reply (``Rejection``); malformed input
becomes ``INVALID_ARGUMENT``, so no traceback ever crosses the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol

import grpclib.const
import grpclib.server
import trio
from grpclib import GRPCError
from grpclib.const import Cardinality, Status

from peer.gen.auction.v1 import (
    BidRequest,
    CloseRequest,
    ControlBase,
    ControlReply,
    HelloReply,
    HelloRequest,
    LeaveReply,
    LeaveRequest,
    ListReply,
    ListRequest,
    Notification,
    OpenRequest,
    PeerBase,
    PlaceBidReply,
    ProveReply,
    ProveRequest,
    PushReply,
    PushRequest,
    ShowRequest,
    SignedBid,
    StatusReply,
    StatusRequest,
    SyncReply,
    SyncRequest,
    WatchRequest,
)
from peer.net import aio
from peer.net.h2_guard import cut_connection
from peer.net.rate_limit import PeerRateLimiter, RateLimited, caller, caller_key
from peer.net.tls import is_tls

__all__ = ["BadInput", "ControlService", "PeerService", "StorageUnavailable"]

# Refuse oversized batches before touching them (DESIGN.md section 7).
MAX_EVENTS_PER_PUSH = 4096
MAX_HEADS = 100_000


class BadInput(Exception):
    """A peer sent something malformed: it becomes ``INVALID_ARGUMENT`` on the wire."""


class StorageUnavailable(Exception):
    """This node cannot write its event log now (disk full, read-only, I/O error).

    Pushes are answered ``UNAVAILABLE`` with :attr:`reason`; bids and control calls
    get a ``STORAGE_UNAVAILABLE`` rejection instead.

    Attributes:
        reason: SQLite's or the OS's words, without local paths (shown to peers).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PeerApi(Protocol):
    """The node as the public Peer service sees it (trio coroutines)."""

    async def on_hello(self, request: HelloRequest, reached_at: object,
                       binding: bytes = b"") -> HelloReply: ...

    async def on_prove(self, request: ProveRequest, remote: object) -> ProveReply: ...

    async def on_place_bid(self, bid: SignedBid) -> PlaceBidReply: ...

    async def on_push(self, request: PushRequest) -> PushReply: ...

    async def on_sync_page(self, request: SyncRequest, cursor: tuple[int, int] | None
                           ) -> tuple[SyncReply, tuple[int, int] | None]: ...

    async def on_leave(self, request: LeaveRequest) -> bool: ...


class ControlApi(Protocol):
    """The node as the local CLI sees it (trio coroutines)."""

    async def control_open(self, request: OpenRequest) -> ControlReply: ...

    async def control_bid(self, request: BidRequest) -> ControlReply: ...

    async def control_close(self, request: CloseRequest) -> ControlReply: ...

    async def control_list(self, request: ListRequest) -> ListReply: ...

    async def control_show(self, request: ShowRequest) -> ControlReply: ...

    async def control_status(self) -> StatusReply: ...

    def control_subscribe(self) -> trio.MemoryReceiveChannel[Notification]: ...


class PeerService(PeerBase):  # type: ignore[misc]  # generated base, not type-checked
    def __init__(self, node: PeerApi, limiter: PeerRateLimiter | None = None, *,
                 binding: bytes = b"") -> None:
        self.node = node
        self.limiter = limiter or PeerRateLimiter()
        # SHA-256 of our TLS certificate: signed in Hello proofs over TLS connections.
        self.binding = binding

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        # Hello and Prove need the connection, not only the message: the callee signs
        # only the address at which the caller's connection reached it (its local
        # socket address), and names the remote address in its warnings.
        mapping: dict[str, grpclib.const.Handler] = super().__mapping__()
        mapping["/auction.v1.Peer/Hello"] = grpclib.const.Handler(
            self._rpc_hello, Cardinality.UNARY_UNARY, HelloRequest, HelloReply)
        mapping["/auction.v1.Peer/Prove"] = grpclib.const.Handler(
            self._rpc_prove, Cardinality.UNARY_UNARY, ProveRequest, ProveReply)
        # Every handler is told which connection its request came on, for the
        # per-peer rate limits (the generated ones only get the message).
        return {path: handler._replace(func=_with_caller(handler.func))
                for path, handler in mapping.items()}

    async def _rpc_hello(self, stream: grpclib.server.Stream[HelloRequest, HelloReply]
                         ) -> None:
        message = await stream.recv_message()
        assert message is not None  # grpclib's unary contract
        if len(message.heads) > MAX_HEADS:
            raise GRPCError(Status.INVALID_ARGUMENT, "too many heads")
        try:
            transport = getattr(stream.peer, "_transport", None)
            binding = self.binding if is_tls(transport) else b""
            reply = await aio.from_trio(self.node.on_hello, message,
                                        _socket_address(stream, "sockname"), binding)
        except BadInput as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
        await stream.send_message(reply)

    async def _rpc_prove(self, stream: grpclib.server.Stream[ProveRequest, ProveReply]
                         ) -> None:
        message = await stream.recv_message()
        assert message is not None
        try:
            reply = await aio.from_trio(self.node.on_prove, message,
                                        _socket_address(stream, "peername"))
        except BadInput as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
        await stream.send_message(reply)

    async def place_bid(self, message: SignedBid) -> PlaceBidReply:
        await self.limiter.acquire("bid")
        return await aio.from_trio(self.node.on_place_bid, message)

    async def push(self, message: PushRequest) -> PushReply:
        if len(message.events) > MAX_EVENTS_PER_PUSH:
            raise GRPCError(Status.INVALID_ARGUMENT,
                            f"at most {MAX_EVENTS_PER_PUSH} events per push")
        await self.limiter.acquire("push", len(message.events))
        try:
            return await aio.from_trio(self.node.on_push, message)
        except BadInput as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
        except StorageUnavailable as exc:
            raise GRPCError(Status.UNAVAILABLE, f"storage unavailable: {exc.reason}") from None

    async def push_stream(self, messages: AsyncIterator[PushRequest]
                          ) -> AsyncIterator[PushReply]:
        # One long-lived stream per sending peer: each request is handled exactly as a
        # unary Push (verify, apply, persist, notify) before its reply goes out, so the
        # sender has one batch in flight and learns of a failure as it would from Push.
        # Malformed input ends the stream with INVALID_ARGUMENT.
        async with aio.serial_caller(self.node.on_push) as on_push:
            async for message in messages:
                if len(message.events) > MAX_EVENTS_PER_PUSH:
                    raise GRPCError(Status.INVALID_ARGUMENT,
                                    f"at most {MAX_EVENTS_PER_PUSH} events per push")
                await self.limiter.acquire("push", len(message.events))
                try:
                    reply = await on_push(message)
                except BadInput as exc:
                    raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
                except StorageUnavailable as exc:
                    raise GRPCError(Status.UNAVAILABLE,
                                    f"storage unavailable: {exc.reason}") from None
                yield reply

    async def sync(self, message: SyncRequest) -> AsyncIterator[SyncReply]:
        if len(message.heads) > MAX_HEADS:
            raise GRPCError(Status.INVALID_ARGUMENT, "too many heads")
        await self.limiter.acquire("sync")
        cursor: tuple[int, int] | None = None
        while True:
            page, cursor = await aio.from_trio(self.node.on_sync_page, message, cursor)
            if page.events:
                yield page
            if cursor is None:
                return

    async def leave(self, message: LeaveRequest) -> LeaveReply:
        if not await aio.from_trio(self.node.on_leave, message):
            raise GRPCError(Status.INVALID_ARGUMENT, "goodbye not signed by its node")
        return LeaveReply()


def _socket_address(stream: grpclib.server.Stream[Any, Any], which: str) -> object:
    """The connection's local ("sockname") or remote ("peername") socket address.

    grpclib 0.4.9 (pinned) exposes only the remote one (``Peer.addr``); both come
    from the transport it keeps in ``Peer._transport``. If a later grpclib drops
    that attribute this answers None, and the callee then refuses to prove
    anything (``tests/integration/test_handshake_rpc.py`` fails first).
    """
    transport = getattr(stream.peer, "_transport", None)
    return transport.get_extra_info(which) if transport is not None else None


def _with_caller(func: Callable[[Any], Coroutine[Any, Any, None]]
                 ) -> Callable[[Any], Coroutine[Any, Any, None]]:
    async def handle(stream: Any) -> None:
        # grpclib runs each request in its own asyncio task: the context is its own.
        caller.set(caller_key(stream.peer))
        try:
            await func(stream)
        except RateLimited as exc:
            if exc.cut:
                # After this refusal is on its way: a flooder that ignores refusals.
                asyncio.get_running_loop().call_soon(cut_connection, stream)
            raise

    return handle


class ControlService(ControlBase):  # type: ignore[misc]  # generated base
    def __init__(self, node: ControlApi) -> None:
        self.node = node

    async def open(self, message: OpenRequest) -> ControlReply:
        return await aio.from_trio(self.node.control_open, message)

    async def bid(self, message: BidRequest) -> ControlReply:
        return await aio.from_trio(self.node.control_bid, message)

    async def close(self, message: CloseRequest) -> ControlReply:
        return await aio.from_trio(self.node.control_close, message)

    async def list(self, message: ListRequest) -> ListReply:
        return await aio.from_trio(self.node.control_list, message)

    async def show(self, message: ShowRequest) -> ControlReply:
        return await aio.from_trio(self.node.control_show, message)

    async def status(self, message: StatusRequest) -> StatusReply:
        return await aio.from_trio(self.node.control_status)

    async def watch(self, message: WatchRequest) -> AsyncIterator[Notification]:
        # A watcher too slow to keep up is disconnected by the node (its channel
        # closes); it never slows the node down.
        notes = self.node.control_subscribe()
        with notes:
            while True:
                try:
                    note = await aio.from_trio(notes.receive)
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    return
                yield note
