"""The peer set: who is out there, who is up, and sending to them.

Addresses come from Grape; a peer is known by the node id it gives in
``Hello``, not by its address. Each peer has its own small outbox and sender
task, so a slow or dead peer never holds up fan-out to the live ones
(DESIGN.md section 6). A failed call marks the peer down; it is skipped until
a jittered exponential backoff expires and a ``Hello`` probe succeeds again.

Pushes to a peer travel over one long-lived ``PushStream`` (one message and one
reply per batch, one batch in flight), not a unary ``Push`` each: a new HTTP/2
stream per batch, with its headers and trailers, cost more CPU on both sides than
the events it carried. The stream fails as a ``Push`` would (error, closed
connection, no reply within ``PUSH_TIMEOUT``): the peer is marked down, and the
next batch after it is up again opens a new stream.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import trio
from grpclib.client import Channel
from grpclib.const import Cardinality

from peer import aio
from peer.address_book import (
    AddressLimits,
    PeerView,
    admit,
    describe_failure,
    forget_dead,
    peer_views,
)
from peer.backoff import Backoff
from peer.codec import LimitedCodec
from peer.gen.auction.v1 import (
    Head,
    HelloReply,
    HelloRequest,
    LeaveReply,
    LeaveRequest,
    PeerStub,
    PlaceBidReply,
    PushReply,
    PushRequest,
    SignedBid,
    SignedEvent,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# How many pending batches (usually one event each) one peer's outbox holds before
# that peer is marked lagging; anti-entropy then heals it instead of the seller
# waiting on it. The sender drains whatever is queued into one Push.
# The sender of each peer is a trio task of the mesh that runs, for its whole life,
# one loop on the asyncio side (where grpclib is): one bridge crossing per peer,
# not one per Push, which is most of what a Push costs the seller beyond grpclib.
OUTBOX_BATCHES = 1024
# Per-call deadlines. Loopback peers answer in milliseconds; these only bound
# how long a black-holed peer can hold one call.
HELLO_TIMEOUT = 3.0
PUSH_TIMEOUT = 5.0
BID_TIMEOUT = 10.0
LEAVE_TIMEOUT = 1.0
PUSH_BATCH_MAX = 512
PUSH_STREAM = "/auction.v1.Peer/PushStream"

_KEEP_CLOSED_CHANNELS = 8

UNKNOWN, UP, DOWN, SELF = "unknown", "up", "down", "self"


class MeshHooks(Protocol):
    """What the mesh needs from the node that owns it."""

    def heads(self) -> list[Head]: ...

    def peer_up(self, link: PeerLink) -> None: ...

    def peer_down(self, link: PeerLink, reason: str) -> None: ...


@dataclass
class PeerLink:
    """One remote address and what we know about the node behind it."""

    address: str
    node_id: bytes = b""
    name: str = ""
    state: str = UNKNOWN
    retry_at: float = 0.0
    backoff: Backoff = field(default_factory=Backoff)
    lagging: bool = False
    channel: Channel | None = None
    outbox_send: Outbox | None = None  # the name tests know; the trio channel it once was
    last_error: str = ""
    reason: str = ""  # last_error in a few words, for `status`
    since: float = field(default_factory=time.time)  # wall clock of the last state change
    down_since: float = 0.0  # trio clock: down without a break since then
    push_streams: int = 0  # PushStreams opened to this peer: one per connection, ideally

    closed: bool = False
    opened: list[Channel] = field(default_factory=list)

    @property
    def stub(self) -> PeerStub:
        return PeerStub(self.open_channel())

    def open_channel(self) -> Channel:
        """The current channel to the peer, created on first use (asyncio side)."""
        if self.closed:
            raise trio.ClosedResourceError("the mesh is shut down")
        if self.channel is None:
            host, _, port = self.address.rpartition(":")
            self.channel = Channel(host, int(port), codec=LimitedCodec())
            self.opened.append(self.channel)
        return self.channel

    def close_channel(self) -> None:
        # Every channel ever opened, not only the current one: grpclib finishes
        # a connect that was in flight when close() ran, and such a channel
        # would otherwise be left open behind our back.
        # They are kept until the final close; only recent ones can still be
        # connecting, hence the bound.
        for channel in self.opened:
            channel.close()
        self.opened = [] if self.closed else self.opened[-_KEEP_CLOSED_CHANNELS:]
        self.channel = None


@dataclass(frozen=True)
class MeshStatistics:
    known: int
    up: int
    down: int
    lagging: int


class Mesh:
    """Discovery results in, fan-out and peer calls out."""

    def __init__(self, node_id: bytes, own_address: str, hooks: MeshHooks,
                 bridge: aio.Bridge, limits: AddressLimits | None = None) -> None:
        self.node_id = node_id
        self.address_limits = limits or AddressLimits()
        # Forgotten addresses and until when (trio clock); bounded like the links.
        self._forgotten: dict[str, float] = {}
        self.bridge = bridge
        self.own_address = own_address
        self.hooks = hooks
        self.links: dict[str, PeerLink] = {}
        self._nursery: trio.Nursery | None = None
        self._changed = trio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the per-peer tasks and the re-probe loop until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reprobe_loop)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.close_channels()

    def close_channels(self, *, final: bool = False) -> None:
        """Close every peer connection; with ``final``, none may open again.

        Called when the node stops: an asyncio loop that closes with a grpclib
        channel still open reports it as an error, and a call cancelled
        mid-flight could otherwise reconnect after the first close.
        """
        for link in self.links.values():
            link.closed = link.closed or final
            link.close_channel()

    # ------------------------------------------------------------------ discovery

    def add_addresses(self, addresses: Iterable[str]) -> list[PeerLink]:
        """Start probing the addresses worth taking in; returns their new links.

        First forgets addresses that stayed down too long, then admits at most
        ``max_new_per_lookup`` new ones within ``max_known`` (``peer.address_book``).
        """
        now = trio.current_time()
        self._forget(forget_dead(self.links, now, self.address_limits.forget_after), now)
        admitted, evicted = admit(self.links, addresses, self.own_address, self._forgotten,
                                  now, self.address_limits)
        self._forget(evicted, now)
        new = []
        for address in admitted:
            link = PeerLink(address)
            self.links[address] = link
            new.append(link)
            if self._nursery is not None:
                self._nursery.start_soon(self.probe, link)
        return new

    def _forget(self, addresses: list[str], now: float) -> None:
        """Drop ``addresses`` from the mesh; Grape's answers bring them back only
        after ``forget_after``."""
        for address in addresses:
            link = self.links.pop(address)
            link.close_channel()
            log.debug("forgot %s (%s)", address, link.reason or "never answered")
            self._forgotten.pop(address, None)
            self._forgotten[address] = now + self.address_limits.forget_after
        expired = [a for a, until in self._forgotten.items() if until <= now]
        for address in expired:
            del self._forgotten[address]
        while len(self._forgotten) > self.address_limits.max_known:
            del self._forgotten[next(iter(self._forgotten))]  # the oldest entry
        if addresses:
            self._poke()

    def peer_views(self) -> tuple[list[PeerView], int]:
        """`status`: one view per known node, and how many addresses never answered."""
        return peer_views(self.links.values(), trio.current_time())

    async def wait_probed(self, links: Iterable[PeerLink]) -> None:
        """Wait until every one of ``links`` has answered its first probe or failed.

        The probes run in the mesh's own nursery: cancelling this wait (callers
        bound it with a cancel scope) does not cancel them.
        """
        pending = list(links)
        while any(link.state == UNKNOWN for link in pending):
            await self._changed.wait()

    async def probe(self, link: PeerLink) -> bool:
        """Say Hello; on success the link is up and its node id known."""
        request = HelloRequest(node_id=self.node_id, name="", heads=self.hooks.heads())
        try:
            with trio.fail_after(HELLO_TIMEOUT + 1):
                reply = await self.bridge.to_trio(
                    _on_stub, link, functools.partial(_hello, request))
        except Exception as exc:  # any failure of a remote peer is only "down"
            self.mark_down(link, exc)
            return False
        if reply.node_id == self.node_id:
            # Our own record under another address (e.g. 0.0.0.0 and 127.0.0.1).
            link.state = SELF
            link.close_channel()
            self._poke()
            return False
        for other in self.links.values():
            if other is not link and other.node_id == reply.node_id and other.state == UP:
                # Same node under a second address: keep one link per node id.
                link.state = SELF
                link.close_channel()
                self._poke()
                return False
        link.node_id = reply.node_id
        link.name = reply.name
        self._mark_up(link)
        return True

    async def who_is_at(self, address: str) -> bytes:
        """The node id that answers Hello at ``address``, which is not made a peer.

        The self-check asks its own announced address this way. Raises on any failure
        (refused, timed out, malformed reply).
        """
        link = PeerLink(address)
        request = HelloRequest(node_id=self.node_id, name="", heads=[])
        try:
            with trio.fail_after(HELLO_TIMEOUT + 1):
                reply = await self.bridge.to_trio(
                    _on_stub, link, functools.partial(_hello, request))
        finally:
            link.closed = True
            link.close_channel()
        node_id: bytes = reply.node_id
        return node_id

    # ------------------------------------------------------------------ state changes

    def _mark_up(self, link: PeerLink) -> None:
        was = link.state
        link.state = UP
        if was != UP:
            link.since = time.time()
        link.backoff.reset()
        link.last_error = ""
        if link.outbox_send is None and self._nursery is not None:
            link.outbox_send = Outbox(OUTBOX_BATCHES)
            self._nursery.start_soon(self._sender, link, link.outbox_send)
        self._poke()
        if was != UP:
            log.info("peer up: %s at %s", link.name or link.node_id.hex()[:8], link.address)
            self.hooks.peer_up(link)

    def mark_down(self, link: PeerLink, exc: BaseException | str) -> None:
        was = link.state
        reason = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
        link.state = DOWN
        if was != DOWN:
            link.since = time.time()
            link.down_since = trio.current_time()
        link.last_error = reason
        link.reason = describe_failure(exc)
        link.retry_at = trio.current_time() + link.backoff.next_delay()
        link.close_channel()
        self._poke()
        if was == UP:
            log.info("peer down: %s at %s (%s)", link.name or "?", link.address, reason)
            self.hooks.peer_down(link, reason)
        else:
            log.debug("peer %s unreachable: %s", link.address, reason)

    def mark_left(self, node_id: bytes) -> None:
        """A peer said goodbye: stop sending to it at once."""
        for link in self.links.values():
            if link.node_id == node_id and link.state == UP:
                self.mark_down(link, "left")

    def reprobe_soon(self, node_id: bytes) -> None:
        """``node_id`` says Hello to us: if it is down here, probe it now, not at backoff.

        A restarted node comes back at the same address (its port is remembered), where
        a backoff of up to ``Backoff.cap`` may be running. Only a probe of our own marks
        it up, so a Hello that lies about its node id costs one Hello back.
        """
        for link in self.links.values():
            if link.node_id == node_id and link.state == DOWN and link.retry_at != math.inf:
                link.retry_at = trio.current_time()
                self._poke()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _reprobe_loop(self) -> None:
        while True:
            now = trio.current_time()
            due = [link for link in self.links.values()
                   if link.state == DOWN and link.retry_at <= now]
            for link in due:
                assert self._nursery is not None
                link.retry_at = math.inf  # one probe at a time per link
                self._nursery.start_soon(self.probe, link)
            waits = [link.retry_at for link in self.links.values()
                     if link.state == DOWN and link.retry_at != math.inf]
            with trio.move_on_at(min(waits, default=now + 1.0)):
                await self._changed.wait()

    # ------------------------------------------------------------------ queries

    def up_links(self) -> list[PeerLink]:
        return [link for link in self.links.values() if link.state == UP]

    def link_for(self, node_id: bytes) -> PeerLink | None:
        for link in self.links.values():
            if link.node_id == node_id and link.state == UP:
                return link
        for link in self.links.values():
            if link.node_id == node_id and link.state != SELF:
                return link
        return None

    def random_up(self) -> PeerLink | None:
        up = self.up_links()
        return random.choice(up) if up else None

    def statistics(self) -> MeshStatistics:
        links = [lk for lk in self.links.values() if lk.state != SELF]
        return MeshStatistics(
            known=len(links),
            up=sum(lk.state == UP for lk in links),
            down=sum(lk.state == DOWN for lk in links),
            lagging=sum(lk.lagging for lk in links),
        )

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def next_change(self) -> trio.Event:
        """The event the next change sets. Take it before checking a condition, then
        wait on it: a change between the check and the wait is not missed."""
        return self._changed

    # ------------------------------------------------------------------ calls

    async def call(self, link: PeerLink, fn: Callable[[PeerStub], Awaitable[T]],
                   deadline: float) -> T | None:
        """Run one call to ``link``; on any failure mark it down and return None.

        ``fn`` carries grpclib's own timeout; ``deadline`` (seconds) is the trio-side
        backstop in case the asyncio side never answers.
        """
        try:
            with trio.fail_after(deadline + 1):
                return await self.bridge.to_trio(_on_stub, link, fn)
        except Exception as exc:
            log.debug("call to %s failed", link.address, exc_info=True)
            self.mark_down(link, exc)
            return None

    def broadcast(self, events: list[SignedEvent]) -> None:
        """Queue ``events`` for every up peer without waiting on any of them."""
        for link in self.up_links():
            if link.outbox_send is not None and not link.outbox_send.put_nowait(events):
                # Never block the seller on a slow peer; anti-entropy heals it.
                link.lagging = True

    async def _sender(self, link: PeerLink, outbox: Outbox) -> None:
        """The task that pushes to ``link``: owned by the mesh, runs until cancelled."""
        await self.bridge.to_trio(self._send_loop, link, outbox)

    async def _send_loop(self, link: PeerLink, outbox: Outbox) -> None:
        # Runs on the asyncio side, inside _sender. A failure marks the peer down,
        # exactly as Mesh.call does.
        batch: list[SignedEvent] = []
        while True:
            if not batch:
                batch = await outbox.take(PUSH_BATCH_MAX)
            if link.state != UP:
                batch = []  # dropped; the peer syncs when it comes back
                continue
            try:
                batch = await self._push_stream(link, outbox, batch)
            except Exception as exc:
                log.debug("push to %s failed", link.address, exc_info=True)
                self.mark_down(link, exc)
                batch = []

    async def _push_stream(self, link: PeerLink, outbox: Outbox,
                           batch: list[SignedEvent]) -> list[SignedEvent]:
        """Send ``batch`` and every later one over one ``PushStream`` to ``link``.

        Returns (with a batch taken but not sent) when the link is no longer up or
        was reconnected meanwhile; raises on any failure of the stream. Each batch,
        and opening the stream, must be answered within ``PUSH_TIMEOUT``; an idle
        stream waits for the next batch without a deadline.
        """
        channel = link.open_channel()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + PUSH_TIMEOUT) as deadline:
                async with channel.request(PUSH_STREAM, Cardinality.STREAM_STREAM,
                                           PushRequest, PushReply) as stream:
                    await stream.send_request()
                    link.push_streams += 1
                    while True:
                        deadline.reschedule(loop.time() + PUSH_TIMEOUT)
                        await stream.send_message(
                            PushRequest(sender=self.node_id, events=batch))
                        if await stream.recv_message() is None:
                            raise ConnectionError("the peer ended the push stream")
                        deadline.reschedule(None)
                        batch = await outbox.take(PUSH_BATCH_MAX)
                        if link.state != UP or link.channel is not channel:
                            # Leaving with an exception resets the stream at once,
                            # without waiting on a connection that may be gone.
                            raise _Reopen
        except _Reopen:
            return batch

    async def place_bid(self, seller: bytes, bid: SignedBid) -> PlaceBidReply | None:
        """Send a bid to the seller's node; None when the seller cannot be reached."""
        link = self.link_for(seller)
        if link is None:
            return None
        if link.state != UP and not await self.probe(link):
            return None
        return await self.call(link, lambda stub: stub.place_bid(bid, timeout=BID_TIMEOUT),
                               BID_TIMEOUT)

    async def say_goodbye(self, request: LeaveRequest) -> None:
        """Tell every up peer we are leaving, briefly and all at once."""
        async with trio.open_nursery() as nursery:
            for link in self.up_links():
                nursery.start_soon(self._leave_one, link, request)

    async def _leave_one(self, link: PeerLink, request: LeaveRequest) -> None:
        with trio.move_on_after(LEAVE_TIMEOUT + 0.5):
            try:
                await self.bridge.to_trio(_on_stub, link, functools.partial(_leave, request))
            except Exception as exc:
                log.debug("goodbye to %s failed: %s", link.address, exc)


class _Reopen(Exception):
    """Internal: the push stream's link went down or got a new channel."""


class Outbox:
    """One peer's pending batches: filled by ``broadcast`` (trio, never waits), drained
    by that peer's send loop (asyncio). Bounded: a full outbox refuses the batch."""

    def __init__(self, limit: int) -> None:
        self._batches: deque[list[SignedEvent]] = deque()
        self._limit = limit
        self._wakeup = asyncio.Event()

    def put_nowait(self, events: list[SignedEvent]) -> bool:
        if len(self._batches) >= self._limit:
            return False
        self._batches.append(events)
        self._wakeup.set()
        return True

    async def take(self, max_events: int) -> list[SignedEvent]:
        """Everything queued (up to about ``max_events``), waiting for a first batch."""
        while not self._batches:
            self._wakeup.clear()
            await self._wakeup.wait()
        batch = list(self._batches.popleft())
        while self._batches and len(batch) < max_events:
            batch.extend(self._batches.popleft())
        return batch


# The helpers below run on the asyncio side: the grpclib Channel behind
# ``link.stub`` is created there, bound to the loop that is running it.


async def _on_stub(link: PeerLink, fn: Callable[[PeerStub], Awaitable[T]]) -> T:
    return await fn(link.stub)


async def _hello(request: HelloRequest, stub: PeerStub) -> HelloReply:
    return await stub.hello(request, timeout=HELLO_TIMEOUT)


async def _leave(request: LeaveRequest, stub: PeerStub) -> LeaveReply:
    return await stub.leave(request, timeout=LEAVE_TIMEOUT)
