"""What a node answers its peers: Hello and Prove, PlaceBid, Push, Sync pages, Leave.

:class:`peer.net.rpc.PeerService` decodes and bounds each call; these handlers decide.
"""

from __future__ import annotations

import logging

import trio

from peer.core.bid_replies import signed_rejection
from peer.core.handshake import HandshakeError, same_endpoint, verify_caller
from peer.core.identity import verify
from peer.core.rules import Rejection
from peer.gen.auction.v1 import (
    Accept,
    Goodbye,
    HelloReply,
    HelloRequest,
    LeaveRequest,
    Notification,
    NotificationKind,
    PlaceBidReply,
    ProveReply,
    ProveRequest,
    PushReply,
    PushRequest,
    RejectCode,
    SignedBid,
    SignedEvent,
    SyncReply,
    SyncRequest,
)
from peer.gen.auction.v1 import Rejection as RejectionMsg
from peer.net.mesh import PeerLink
from peer.net.rpc import BadInput, StorageUnavailable
from peer.net.sync import PAGE_SIZE, pull
from peer.node.event_log import EventLog

log = logging.getLogger(__name__)


# (index into the sorted authors still to send, last seq sent of that author)
SyncCursor = tuple[int, int]


def _endpoint_text(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return "an unknown address"


class PeerHandlers(EventLog):
    """The node's side of the Peer service and of the mesh's up/down hooks."""

    def peer_up(self, link: PeerLink) -> None:
        self.reports.peer(True, link.name, link.node_id, link.address)
        self._send_watchers(Notification(kind=NotificationKind.PEER_UP, peer=link.node_id,
                                         peer_name=link.name,
                                         text=f"peer up: {link.name}"))
        # A peer that (re)appears may hold what we missed, and vice versa. Before
        # ready, the initial sync is already pulling from every peer that is up.
        if self._ready and self._nursery is not None and self.mesh is not None:
            mesh = self.mesh
            self._nursery.start_soon(self._pull_gate.pull_once, link,
                                     lambda: pull(self, mesh, link))

    def peer_down(self, link: PeerLink, reason: str) -> None:
        self.reports.peer(False, link.name, link.node_id, link.address, reason)
        self._send_watchers(Notification(kind=NotificationKind.PEER_DOWN, peer=link.node_id,
                                         peer_name=link.name,
                                         text=f"peer down: {link.name} ({reason})"))

    async def on_hello(self, request: HelloRequest, reached_at: object,
                       binding: bytes = b"") -> HelloReply:
        """Answer a Hello with a proof of our key over the caller's challenge.

        ``reached_at`` is the local socket address the caller's connection reached;
        we sign only that address (``peer.core.handshake``), and ``binding``, the
        SHA-256 of our TLS certificate when the connection is TLS. A Hello without a
        challenge (an older caller) gets a reply that proves nothing.
        """
        identity = self.identity
        assert identity is not None
        reply = HelloReply(node_id=identity.node_id, name=self.config.name,
                           heads=self.heads())
        if not request.challenge:
            return reply
        if not same_endpoint(request.address, reached_at):
            raise BadInput(f"this node was reached at {_endpoint_text(reached_at)}, not at"
                           f" {request.address[:100]!r}: it proves its id only for the"
                           " address it was reached at")
        try:
            reply.challenge, reply.proof = self._challenges.issue(
                identity, request.node_id, request.challenge, request.address,
                trio.current_time(), binding)
        except HandshakeError as exc:
            raise BadInput(str(exc)) from None
        return reply

    async def on_prove(self, request: ProveRequest, remote: object) -> ProveReply:
        """The caller's half of the handshake: it proves the id it gave in its Hello."""
        assert self.identity is not None
        try:
            pending = self._challenges.take(request.challenge, trio.current_time())
            verify_caller(pending, self.identity.node_id, request.node_id, request.proof)
        except HandshakeError as exc:
            where = _endpoint_text(remote)
            host = str(remote[0]) if isinstance(remote, tuple) and remote else where
            self._unproven_callers.warn(host, "a peer at %s did not prove its id: %s",
                                        where, exc)
            raise BadInput(str(exc)) from None
        log.debug("peer %s proved its id from %s", request.node_id.hex()[:8],
                  _endpoint_text(remote))
        # A peer that proved its id to us is alive: if it is down here (a restart at the
        # same address, with a backoff running), probe it now. Only a proven id does
        # this, so a Hello that lies costs us nothing more.
        if self.mesh is not None and request.node_id != self.identity.node_id:
            self.mesh.reprobe_soon(request.node_id)
        return ProveReply()

    async def on_place_bid(self, bid: SignedBid) -> PlaceBidReply:
        assert self.identity is not None
        # The Accept carries exactly the stamp the rules were checked at, so a bid
        # accepted just before the end is never stamped at or after it.
        stamp = self._stamp()
        rejection = self.ledger.check_bid(bid, self.identity.node_id, stamp)
        if rejection is not None and len(self._in_flight):
            # The refusal may rest on an event whose commit can still fail (a higher
            # bid, a close): answer only from what is on disk.
            await self._settle_in_flight()
            stamp = self._stamp()
            rejection = self.ledger.check_bid(bid, self.identity.node_id, stamp)
        if rejection is None:
            try:
                signed = (await self._author(accept=Accept(bid=bid), time_ms=stamp)).signed
            except StorageUnavailable as exc:
                # The bidder learns the seller's disk is the problem, not the network;
                # the seller's paths stay out of it.
                rejection = Rejection(RejectCode.STORAGE_UNAVAILABLE,
                                      f"the seller cannot store bids now: {exc.reason}")
            else:
                return PlaceBidReply(accepted=signed)
        # Signed: the bidder shows it only if our key vouches for it, and can show it
        # to anyone (peer/core/bid_replies.py).
        return signed_rejection(self.identity, bid, RejectionMsg(code=rejection.code,
                                                                 reason=rejection.reason))

    async def on_push(self, request: PushRequest) -> PushReply:
        source = self.mesh.link_for(request.sender) if self.mesh else None
        await self.ingest(list(request.events), source)
        return PushReply()

    async def on_sync_page(self, request: SyncRequest, cursor: SyncCursor | None
                           ) -> tuple[SyncReply, SyncCursor | None]:
        """One page of a Sync stream, and where the next page starts (None when done)."""
        assert self.store is not None
        theirs = {h.author: h.seq for h in request.heads}
        todo = sorted(a for a, s in self._durable_heads().items() if s > theirs.get(a, 0))
        author_index, after = cursor if cursor is not None else (0, 0)
        events: list[SignedEvent] = []
        while author_index < len(todo) and len(events) < PAGE_SIZE:
            author = todo[author_index]
            want = PAGE_SIZE - len(events)
            rows = await self.store.range_raw_async(author, max(after, theirs.get(author, 0)),
                                                    want)
            events += [SignedEvent(event=data, signature=signature)
                       for _, data, signature in rows]
            if len(rows) < want:
                author_index, after = author_index + 1, 0
            else:
                after = rows[-1][0]
        done = author_index >= len(todo)
        return SyncReply(events=events), None if done else (author_index, after)

    async def on_leave(self, request: LeaveRequest) -> bool:
        try:
            goodbye = Goodbye.parse(request.goodbye)
        except Exception:
            return False
        if not verify(goodbye.node_id, request.goodbye, request.signature):
            return False
        if self.mesh is not None:
            self.mesh.mark_left(goodbye.node_id, goodbye.time_ms)
        return True
