"""The peer set: who is out there, who is up, and sending to them.

Addresses come from Grape and are only candidates; a peer is known by the node id
it *proves* in ``Hello`` (``peer.core.handshake``: it signs our fresh challenge and the
address we dialed with that id's key), never by one it merely claims. Several
addresses may prove one id (a restarted node, two interfaces): one of them is used,
the others are kept as duplicates and probed again as soon as the used one goes
down. An address that cannot prove an id is never up. Each peer has its own small outbox and sender
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
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Cardinality, Status

from peer.core.bid_replies import check_bid_reply
from peer.core.handshake import HandshakeError, new_challenge, sign_caller, verify_callee
from peer.core.identity import Identity
from peer.gen.auction.v1 import (
    Head,
    HelloReply,
    HelloRequest,
    LeaveReply,
    LeaveRequest,
    PeerStub,
    PlaceBidReply,
    ProveReply,
    ProveRequest,
    PushReply,
    PushRequest,
    SignedBid,
    SignedEvent,
)
from peer.net import aio
from peer.net.address_book import (
    AddressLimits,
    PeerView,
    admit,
    describe_failure,
    forget_dead,
    peer_views,
)
from peer.net.backoff import Backoff
from peer.net.codec import LimitedCodec
from peer.net.h2_guard import GuardedChannel
from peer.net.tls import client_context, describe_tls_failure
from peer.net.warn_once import WarnOnce

log = logging.getLogger(__name__)

T = TypeVar("T")

# How many pending batches (usually one event each) one peer's outbox holds before
# that peer is marked lagging; anti-entropy then heals it instead of the seller
# waiting on it. The sender drains whatever is queued into one Push.
# The sender of each peer is a trio task of the mesh that runs, for its whole life,
# one loop on the asyncio side (where grpclib is): one bridge crossing per peer,
# not one per Push, which is most of what a Push costs the seller beyond grpclib.
OUTBOX_BATCHES = 1024
# Longest wait between probes of an address that never answered (README, Limits).
UNANSWERED_BACKOFF_CAP = 300.0
# Per-call deadlines. Loopback peers answer in milliseconds; these only bound
# how long a black-holed peer can hold one call.
HELLO_TIMEOUT = 3.0
PUSH_TIMEOUT = 5.0
BID_TIMEOUT = 10.0
LEAVE_TIMEOUT = 1.0
PUSH_BATCH_MAX = 512
PUSH_STREAM = "/auction.v1.Peer/PushStream"
# Liveness: an up peer that has not answered anything of ours for LIVENESS_IDLE
# seconds gets a Hello (HELLO_TIMEOUT); no answer marks it down. So a peer that
# vanishes without a word is shown down within about
# LIVENESS_IDLE + LIVENESS_TICK + HELLO_TIMEOUT + 1 seconds, even by nodes that
# never send it anything. Pushes, calls and probes that succeed count as heard.
LIVENESS_IDLE = 10.0
LIVENESS_TICK = 1.0

_KEEP_CLOSED_CHANNELS = 8

# How many of a seller's addresses one bid may try when the first cannot be used
# (it does not prove the seller's id, or answers with something the seller did not sign).
BID_ADDRESSES_TRIED = 4

# How far a peer's clock may be behind ours before its goodbye counts as an old one.
GOODBYE_SKEW_MS = 30_000

# DUPLICATE: proved the id of a peer that is already up at another address.
UNKNOWN, UP, DOWN, SELF, DUPLICATE = "unknown", "up", "down", "self", "duplicate"


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
    heard_at: float = 0.0  # trio clock: the last time it answered us (liveness)
    liveness_probe: bool = False  # a liveness probe is in flight
    heads: dict[bytes, int] = field(default_factory=dict)  # from its last Hello reply
    tls: bool = False  # dial it over TLS (peer.net.tls)

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
            self.channel = GuardedChannel(host, int(port), codec=LimitedCodec(),
                                          ssl=client_context() if self.tls else None)
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

    def __init__(self, identity: Identity, own_address: str, hooks: MeshHooks,
                 bridge: aio.Bridge, limits: AddressLimits | None = None, *,
                 tls: bool = False) -> None:
        self.identity = identity
        self.tls = tls
        self.node_id = identity.node_id
        self._unproven = WarnOnce(log)
        self.address_limits = limits or AddressLimits()
        # Forgotten addresses and until when (trio clock); bounded like the links.
        self._forgotten: dict[str, float] = {}
        # When the next probe of an address that never answered may start.
        self._next_probe_slot = -math.inf
        self.bridge = bridge
        self.own_address = own_address
        self.hooks = hooks
        self.links: dict[str, PeerLink] = {}
        self._nursery: trio.Nursery | None = None
        self._changed = trio.Event()
        self.liveness_idle = LIVENESS_IDLE

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the per-peer tasks and the re-probe loop until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reprobe_loop)
                nursery.start_soon(self._liveness_loop)
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
        ``max_new_per_lookup`` new ones within ``max_known`` (``peer.net.address_book``).
        """
        now = trio.current_time()
        self._forget(forget_dead(self.links, now, self.address_limits.forget_after), now)
        admitted, evicted = admit(self.links, addresses, self.own_address, self._forgotten,
                                  now, self.address_limits)
        self._forget(evicted, now)
        new = []
        for address in admitted:
            link = PeerLink(address, tls=self.tls)
            self.links[address] = link
            new.append(link)
            if self._nursery is not None:
                self._nursery.start_soon(self._probe_paced, link)
        return new

    async def _probe_paced(self, link: PeerLink) -> None:
        """Probe ``link``; an address that never answered waits for its turn first.

        A grape can list any number of dead addresses, and each probe costs a
        connection attempt and a Hello: probes of addresses that never answered are
        paced to ``probe_rate`` a second in all (after a burst of ``probe_burst``),
        and back off up to ``UNANSWERED_BACKOFF_CAP`` instead of the usual 30 s.
        """
        if not link.node_id:
            link.backoff.cap = max(link.backoff.cap, UNANSWERED_BACKOFF_CAP)
            limits = self.address_limits
            # A token bucket kept as the time of the next free slot: up to
            # probe_burst probes at once (a node starting among many peers), then
            # probe_rate a second.
            now = trio.current_time()
            earliest = now - limits.probe_burst / limits.probe_rate
            slot = self._next_probe_slot = max(self._next_probe_slot, earliest)
            self._next_probe_slot += 1.0 / limits.probe_rate
            await trio.sleep_until(slot)
        if await self.probe(link):
            link.backoff.cap = Backoff.cap

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
        """Run the handshake with ``link``; True when it is up under the id it proved.

        Not up when the address does not answer (down), does not prove the id it
        claims (down, with a WARNING once per address), is ourselves (self), or
        proves the id of a peer already up elsewhere (duplicate).
        """
        challenge = new_challenge()
        request = HelloRequest(node_id=self.node_id, name=self.identity.name,
                               heads=self.hooks.heads(), challenge=challenge,
                               address=link.address)
        try:
            with trio.fail_after(HELLO_TIMEOUT + 1):
                reply, binding = await self.bridge.to_trio(
                    _on_stub, link, functools.partial(_hello, request))
        except GRPCError as exc:
            if exc.status == Status.INVALID_ARGUMENT:  # it refused to prove anything
                self._not_proven(link, b"", exc.message or "refused the handshake")
            else:
                self.mark_down(link, exc)
            return False
        except Exception as exc:  # any failure of a remote peer is only "down"
            mismatch = describe_tls_failure(exc, self.tls)
            if mismatch is not None:
                self._unproven.warn(link.address, "peer at %s: %s", link.address, mismatch)
                self.mark_down(link, mismatch)
                link.reason = "TLS handshake failed"
            else:
                self.mark_down(link, exc)
            return False
        try:
            if self.tls and not binding:
                raise HandshakeError("no TLS certificate seen on this connection")
            verify_callee(challenge, self.node_id, link.address, reply.node_id,
                          reply.challenge, reply.proof, binding)
        except HandshakeError as exc:
            self._not_proven(link, reply.node_id, str(exc))
            return False
        if reply.node_id == self.node_id:
            # Our own record under another address (e.g. 0.0.0.0 and 127.0.0.1).
            link.node_id = reply.node_id
            link.state = SELF
            link.close_channel()
            self._poke()
            return False
        # Our half: the callee learns our id the same way, on the same connection.
        prove = ProveRequest(node_id=self.node_id, challenge=reply.challenge,
                             proof=sign_caller(self.identity, challenge, reply.node_id,
                                               reply.challenge, link.address, binding))
        try:
            with trio.fail_after(HELLO_TIMEOUT + 1):
                await self.bridge.to_trio(_on_stub, link, functools.partial(_prove, prove))
        except Exception as exc:
            self.mark_down(link, f"refused our proof: {exc}")
            return False
        self._unproven.forget(link.address)
        link.node_id = reply.node_id
        link.name = reply.name
        link.heads = {h.author: h.seq for h in reply.heads}
        if any(other is not link and other.node_id == reply.node_id and other.state == UP
               for other in self.links.values()):
            # The same node under a second address: one link per node id. This one is
            # probed again when that link goes down (_wake_duplicates).
            link.state = DUPLICATE
            link.since = time.time()
            link.close_channel()
            self._poke()
            return False
        self._mark_up(link)
        return True

    async def who_is_at(self, address: str) -> bytes:
        """The node id that answers Hello at ``address``, which is not made a peer.

        The self-check asks its own announced address this way. The id must be proved
        (the first half of the handshake: it signs our challenge and ``address``), so
        an impostor at our announced address cannot pass for us. Raises on any failure
        (refused, timed out, malformed reply, no proof).
        """
        link = PeerLink(address, tls=self.tls)
        challenge = new_challenge()
        request = HelloRequest(node_id=self.node_id, name=self.identity.name, heads=[],
                               challenge=challenge, address=address)
        try:
            with trio.fail_after(HELLO_TIMEOUT + 1):
                reply, binding = await self.bridge.to_trio(
                    _on_stub, link, functools.partial(_hello, request))
        finally:
            link.closed = True
            link.close_channel()
        if self.tls and not binding:
            raise HandshakeError("no TLS certificate seen on this connection")
        verify_callee(challenge, self.node_id, address, reply.node_id, reply.challenge,
                      reply.proof, binding)
        node_id: bytes = reply.node_id
        return node_id

    def _not_proven(self, link: PeerLink, claimed: bytes, reason: str) -> None:
        """``link`` answered but did not prove an id: never up under any id."""
        claim = f"claims {claimed.hex()[:8]}" if claimed else "claims no id"
        self._unproven.warn(link.address, "peer at %s %s but did not prove it: %s",
                            link.address, claim, reason)
        self.mark_down(link, f"did not prove its id: {reason}")
        link.reason = "did not prove its id"  # `status`: short; the log has the detail

    # ------------------------------------------------------------------ state changes

    def _mark_up(self, link: PeerLink) -> None:
        was = link.state
        link.state = UP
        self.heard(link)
        if was != UP:
            link.since = time.time()
        link.backoff.reset()
        link.last_error = ""
        if link.outbox_send is None and self._nursery is not None:
            link.outbox_send = Outbox(OUTBOX_BATCHES)
            self._nursery.start_soon(self._sender, link, link.outbox_send)
        self._poke()
        if was != UP:
            # DEBUG: the node prints each peer change once, as a notification.
            log.debug("peer up: %s at %s", link.name or link.node_id.hex()[:8], link.address)
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
            # DEBUG: the node prints each peer change once, as a notification.
            log.debug("peer down: %s at %s (%s)", link.name or "?", link.address, reason)
            self._wake_duplicates(link.node_id)
            self.hooks.peer_down(link, reason)
        else:
            log.debug("peer %s unreachable: %s", link.address, reason)

    def _wake_duplicates(self, node_id: bytes) -> None:
        """The link used for ``node_id`` went down: its other addresses may be the
        live ones (a restarted node on a new port), so probe them again now."""
        for other in self.links.values():
            if other.node_id == node_id and other.state == DUPLICATE:
                self._probe_duplicate_now(other)
        self._poke()

    @staticmethod
    def _probe_duplicate_now(link: PeerLink) -> None:
        # Down, due now: the re-probe loop takes it; counted as down from now, so the
        # address book does not forget it before that probe.
        link.state = DOWN
        link.since = time.time()
        link.down_since = link.retry_at = trio.current_time()
        link.reason = "duplicate, probing again"

    def mark_left(self, node_id: bytes, said_at_ms: int | None = None) -> None:
        """A peer said goodbye (signed, at ``said_at_ms`` by its clock): stop sending
        to it at once.

        A goodbye said before the link came up (allowing ``GOODBYE_SKEW_MS`` for clocks
        that disagree) is an old one replayed, by any peer that received it once: it
        is ignored, or it would take a live node down again and again.
        """
        for link in self.links.values():
            if link.node_id == node_id and link.state == UP:
                if (said_at_ms is not None
                        and said_at_ms < link.since * 1000 - GOODBYE_SKEW_MS):
                    log.info("ignored an old goodbye of %s (said before its link came up)",
                             link.name or node_id.hex()[:8])
                    continue
                self.mark_down(link, "left")

    def heard(self, link: PeerLink) -> None:
        """``link`` answered us: it needs no liveness probe for a while."""
        link.heard_at = trio.current_time()

    async def _liveness_loop(self) -> None:
        """Probe every up peer not heard from for ``liveness_idle`` seconds.

        Without it a peer that vanished (power, network) looks up for ever to every
        node that has nothing to send it: a failed call is what marks a peer down.
        """
        while True:
            await trio.sleep(LIVENESS_TICK)
            now = trio.current_time()
            for link in self.up_links():
                if not link.liveness_probe and now - link.heard_at >= self.liveness_idle:
                    link.liveness_probe = True
                    assert self._nursery is not None
                    self._nursery.start_soon(self._liveness_probe, link)

    async def _liveness_probe(self, link: PeerLink) -> None:
        try:
            log.debug("liveness probe of %s, silent for %.1fs", link.address,
                      trio.current_time() - link.heard_at)
            await self.probe(link)  # a failure marks it down
        finally:
            link.liveness_probe = False

    def reprobe_soon(self, node_id: bytes) -> None:
        """``node_id`` proved itself to us (its Hello and Prove): if it is down here,
        probe it now, not at backoff.

        A restarted node comes back at the same address (its port is remembered), where
        a backoff of up to ``Backoff.cap`` may be running. Only a probe of our own marks
        it up; a duplicate of it is probed too, as it may be the live address now.
        """
        for link in self.links.values():
            if link.node_id == node_id and link.state == DUPLICATE:
                self._probe_duplicate_now(link)
                self._poke()
            elif link.node_id == node_id and link.state == DOWN and link.retry_at != math.inf:
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
                self._nursery.start_soon(self._probe_paced, link)
            waits = [link.retry_at for link in self.links.values()
                     if link.state == DOWN and link.retry_at != math.inf]
            with trio.move_on_at(min(waits, default=now + 1.0)):
                await self._changed.wait()

    # ------------------------------------------------------------------ queries

    def up_links(self) -> list[PeerLink]:
        return [link for link in self.links.values() if link.state == UP]

    def link_for(self, node_id: bytes) -> PeerLink | None:
        """The link up under ``node_id``, else one that proved it before (to re-probe)."""
        return next(iter(self.candidates(node_id)), None)

    def candidates(self, node_id: bytes) -> list[PeerLink]:
        """Every address that proved ``node_id`` at its last successful handshake, the
        one up first. An address that never proved it is never among them."""
        links = [link for link in self.links.values()
                 if link.node_id == node_id and link.state != SELF]
        return sorted(links, key=lambda link: link.state != UP)

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
                result = await self.bridge.to_trio(_on_stub, link, fn)
        except Exception as exc:
            log.debug("call to %s failed", link.address, exc_info=True)
            self.mark_down(link, exc)
            return None
        self.heard(link)
        return result

    def broadcast(self, events: list[SignedEvent], skip: bytes = b"") -> None:
        """Queue ``events`` for every up peer but the node ``skip`` (which has them),
        without waiting on any of them."""
        for link in self.up_links():
            if link.node_id == skip:
                continue
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
                        self.heard(link)
                        deadline.reschedule(None)
                        batch = await outbox.take(PUSH_BATCH_MAX)
                        if link.state != UP or link.channel is not channel:
                            # Leaving with an exception resets the stream at once,
                            # without waiting on a connection that may be gone.
                            raise _Reopen
        except _Reopen:
            return batch

    async def place_bid(self, seller: bytes, bid: SignedBid) -> PlaceBidReply | None:
        """Send a bid to the seller's node; None when the seller cannot be reached.

        Only an address that proves the seller's id gets the bid, and only an answer
        the seller's key vouches for is returned (``peer.core.bid_replies``): anything
        else marks that address down and the next one that proved the id is tried.
        A call that fails or times out is not retried elsewhere (the seller may have
        taken the bid), unless the connection was refused: a stale address of a
        seller that restarted elsewhere.
        """
        tried: set[str] = set()
        while len(tried) < BID_ADDRESSES_TRIED:
            link = next((lk for lk in self.candidates(seller) if lk.address not in tried),
                        None)
            if link is None:
                return None
            tried.add(link.address)
            if link.state != UP and not await self.probe(link):
                continue
            if link.state != UP or link.node_id != seller:
                continue  # proved another id meanwhile, or a duplicate of an up link
            try:
                with trio.fail_after(BID_TIMEOUT + 1):
                    reply = await self.bridge.to_trio(
                        _on_stub, link, functools.partial(_place_bid, bid))
            except Exception as exc:
                log.debug("bid to %s failed", link.address, exc_info=True)
                self.mark_down(link, exc)
                if isinstance(exc, ConnectionRefusedError):
                    continue  # never sent: that address is gone, the next may be live
                return None
            wrong = check_bid_reply(seller, bid, reply)
            if wrong is None:
                return reply
            self._unproven.warn(link.address, "peer at %s answered a bid for %s: %s",
                                link.address, seller.hex()[:8], wrong)
            self.mark_down(link, wrong)
        return None

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


async def _hello(request: HelloRequest, stub: PeerStub) -> tuple[HelloReply, bytes]:
    """The reply, and the SHA-256 of the TLS certificate the channel's connections
    presented (empty without TLS): the reply's proof must cover it."""
    reply = await stub.hello(request, timeout=HELLO_TIMEOUT)
    channel = stub.channel
    binding = channel.binding if isinstance(channel, GuardedChannel) else None
    return reply, binding or b""


async def _place_bid(bid: SignedBid, stub: PeerStub) -> PlaceBidReply:
    return await stub.place_bid(bid, timeout=BID_TIMEOUT)


async def _prove(request: ProveRequest, stub: PeerStub) -> ProveReply:
    return await stub.prove(request, timeout=HELLO_TIMEOUT)


async def _leave(request: LeaveRequest, stub: PeerStub) -> LeaveReply:
    return await stub.leave(request, timeout=LEAVE_TIMEOUT)
