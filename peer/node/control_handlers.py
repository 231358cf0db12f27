"""What a node answers its user over the Control socket: open, bid, close, list, show.

Replies are sized by what changed: an auction's summary, or the page of bids asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from peer.core.auctions import AuctionKey
from peer.core.rules import Rejection, format_amount, parse_amount
from peer.core.sealed_reserve import seal
from peer.core.signed_events import DecodedEvent, decode_signed, make_signed_bid
from peer.gen.auction.v1 import (
    BidRequest,
    BidView,
    CloseRequest,
    ControlReply,
    ListReply,
    ListRequest,
    Notification,
    Open,
    OpenRequest,
    PeerStatus,
    RejectCode,
    ShowRequest,
    SignedEvent,
    StatusReply,
)
from peer.gen.auction.v1 import Fork as ForkMsg
from peer.gen.auction.v1 import Rejection as RejectionMsg
from peer.net.batch_verify import IncomingBatch
from peer.net.rpc import StorageUnavailable
from peer.net.views import auction_view, bid_page, summary_view
from peer.node.deadlines import Deadlines

log = logging.getLogger(__name__)


WATCH_BUFFER = 256


def _rejected(rejection: Rejection) -> ControlReply:
    return ControlReply(rejected=RejectionMsg(code=rejection.code, reason=rejection.reason))


class ControlHandlers(Deadlines):
    """The node's side of the Control service: what its user asks of it."""

    async def control_open(self, request: OpenRequest) -> ControlReply:
        currency = request.currency.strip() or "USDt"
        item = request.item.strip()
        stamp = self._stamp()
        ends_at = request.ends_at_ms or (stamp + request.ends_in_ms if request.ends_in_ms
                                         else 0)
        opening = Open(item=item, start_amount=request.start_amount, currency=currency,
                       ends_at_ms=ends_at, extend_ms=request.extend_ms,
                       min_increment=request.min_increment.strip(),
                       reserve=request.reserve.strip())
        sealed_text = request.sealed_reserve.strip()
        if sealed_text:
            sealed_amount = parse_amount(sealed_text)
            if isinstance(sealed_amount, Rejection):
                return _rejected(Rejection(RejectCode.BAD_TERMS,
                                           f"sealed reserve: {sealed_amount.reason}"))
            assert self.identity is not None
            sealed = seal(self.identity, format_amount(sealed_amount))
            opening.sealed_reserve, opening.sealed_reserve_box = sealed.commitment, sealed.box
        rejection = self.ledger.check_open(
            item, opening.start_amount, currency, time_ms=stamp, ends_at_ms=opening.ends_at_ms,
            extend_ms=opening.extend_ms, min_increment=opening.min_increment,
            reserve=opening.reserve, sealed_reserve=opening.sealed_reserve,
            sealed_box=opening.sealed_reserve_box)
        if rejection is not None:
            return _rejected(rejection)
        try:
            opened = await self._author(open=opening, time_ms=stamp)
        except StorageUnavailable as exc:
            return _rejected(Rejection(RejectCode.STORAGE_UNAVAILABLE, str(exc)))
        return self._view_reply(AuctionKey(opened.author, opened.seq))

    async def control_bid(self, request: BidRequest) -> ControlReply:
        assert self.identity is not None and self.mesh is not None
        key = self.ledger.resolve(request.auction)
        if isinstance(key, Rejection):
            return _rejected(key)
        auction = self.ledger.auction(key)
        assert auction is not None
        self._nonce += 1
        bid = make_signed_bid(self.identity, key, request.amount, auction.currency,
                              self._nonce, self.wall_clock_ms())
        if key.author == self.identity.node_id:
            # Our own auction: the ledger's SELF_BID (or other) rule answers.
            rejection = self.ledger.check_bid(bid, self.identity.node_id, self._stamp())
            assert rejection is not None
            return _rejected(rejection)
        reply = await self.mesh.place_bid(key.author, bid)
        if reply is None:
            return _rejected(Rejection(RejectCode.SELLER_UNREACHABLE,
                                       f"the seller {auction.seller_name} is not reachable"))
        if reply.rejected is not None:
            return ControlReply(rejected=reply.rejected)
        if reply.accepted is not None:
            # Apply the seller's Accept now, so `show` right after `bid` shows it. Its
            # signatures are checked: the seller's by place_bid, ours when we signed.
            batch = IncomingBatch.prepare(self.ledger, [reply.accepted], verified=True)
            try:
                await self.commit(batch, self.mesh.link_for(key.author))
            except StorageUnavailable as exc:
                return _rejected(Rejection(
                    RejectCode.STORAGE_UNAVAILABLE,
                    f"the seller accepted the bid, but {exc}; `show` on another node"
                    f" shows it"))
            return self._bid_reply(key, reply.accepted, request.amount, auction.currency)
        return self._view_reply(key)

    async def control_close(self, request: CloseRequest) -> ControlReply:
        assert self.identity is not None
        key = self.ledger.resolve(request.auction)
        if isinstance(key, Rejection):
            return _rejected(key)
        rejection = self.ledger.check_close(key, self.identity.node_id)
        if rejection is not None:
            return _rejected(rejection)
        auction = self.ledger.auction(key)
        assert auction is not None
        close = self._close_body(auction)
        if isinstance(close, Rejection):
            return _rejected(close)
        try:
            await self._author(close=close)
        except StorageUnavailable as exc:
            return _rejected(Rejection(RejectCode.STORAGE_UNAVAILABLE, str(exc)))
        return self._view_reply(key)

    async def control_list(self, request: ListRequest) -> ListReply:
        now = self.wall_clock_ms()
        auctions = self._in_flight.durable_auctions(self.ledger.auctions(request.all))
        return ListReply(auctions=[summary_view(a, now) for a in auctions])

    async def control_show(self, request: ShowRequest) -> ControlReply:
        key = self.ledger.resolve(request.auction)
        if isinstance(key, Rejection):
            return _rejected(key)
        return self._view_reply(key, lambda count: bid_page(
            count, request.limit, request.offset, request.oldest_first))

    async def control_status(self) -> StatusReply:
        assert self.identity is not None and self.mesh is not None
        views, unanswered = self.mesh.peer_views()
        peers = [PeerStatus(node_id=v.node_id, name=v.name, address=v.address,
                            up=v.state == "up", detail=v.detail, state=v.state,
                            since_ms=int(v.since * 1000))
                 for v in views]
        return StatusReply(
            node_id=self.identity.node_id, name=self.config.name,
            address=f"{self.config.host}:{self.port}", peers=peers, heads=self.heads(),
            forks=[ForkMsg(author=a, seq=s) for a, s in self.ledger.forks()],
            events=self.ledger.event_count - len(self._in_flight),
            unanswered_addresses=unanswered,
            dial_address=self.self_check.address, self_check=self.self_check.state,
            self_check_detail=self.self_check.detail,
        )

    def control_subscribe(self) -> trio.MemoryReceiveChannel[Notification]:
        send, receive = trio.open_memory_channel[Notification](WATCH_BUFFER)
        self._watchers.append(send)
        return receive

    def _view_reply(self, key: AuctionKey,
                    page: Callable[[int], range] | None = None) -> ControlReply:
        """The auction as it is on disk, with the bids ``page`` picks from its bid count
        (None: only the best one, so the reply's size never grows with the bids)."""
        auction = self.ledger.auction(key)
        durable = self._in_flight.durable_auctions([auction]) if auction is not None else []
        if not durable:
            return _rejected(Rejection(RejectCode.AUCTION_NOT_FOUND, key.text))
        now = self.wall_clock_ms()
        if page is None:
            return ControlReply(auction=summary_view(durable[0], now))
        return ControlReply(auction=auction_view(durable[0], now,
                                                 bids=page(len(durable[0].bids))))

    def _bid_reply(self, key: AuctionKey, accept: SignedEvent, amount: str,
                   currency: str) -> ControlReply:
        """A Bid's reply: the bid the seller accepted and the auction's summary."""
        assert self.identity is not None
        reply = self._view_reply(key)
        decoded = decode_signed(accept)
        parsed = parse_amount(amount)
        if isinstance(decoded, DecodedEvent) and not isinstance(parsed, Rejection):
            # The seller's check_bid_reply proved the Accept holds our bid as sent.
            reply.accepted_bid = BidView(bidder=self.identity.node_id,
                                         bidder_name=self.identity.name,
                                         amount=format_amount(parsed), currency=currency,
                                         time_ms=decoded.fields.time_ms)
        return reply
