"""Building timed auctions for the ledger tests: an author whose clock the test sets."""

from __future__ import annotations

from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.ledger import Ledger
from peer.core.rules import Rejection
from peer.core.sealed_reserve import Sealed, open_box, seal
from peer.core.signed_events import make_signed_bid, sign_event
from peer.gen.auction.v1 import Accept, Close, Event, Open, SignedBid, SignedEvent

T0 = 1_800_000_000_000


class ClockedAuthor:
    """One author's log and its own ledger; every event is stamped with ``now``."""

    def __init__(self, identity: Identity, now: int = T0) -> None:
        self.identity = identity
        self.ledger = Ledger()
        self.log: list[SignedEvent] = []
        self.now = now
        self.nonce = 0

    @property
    def node_id(self) -> bytes:
        return self.identity.node_id

    def event(self, time_ms: int | None = None, **body: object) -> SignedEvent:
        """Author the next event, stamped ``time_ms`` (default: the author's stamp of now)."""
        ident = self.identity
        stamp = self.ledger.stamp(ident.node_id, self.now) if time_ms is None else time_ms
        event = self.ledger.next_event(ident.node_id, ident.name, stamp,
                                       **body)  # type: ignore[arg-type]
        signed = sign_event(ident, event)
        result = self.ledger.apply(signed)
        assert result.rejection is None, result.rejection
        self.log.append(signed)
        return signed

    def open(self, item: str, start: str = "10", *, ends_in: int = 0, extend: int = 0,
             increment: str = "", reserve: str = "", sealed: str = "") -> AuctionKey:
        stamp = self.ledger.stamp(self.node_id, self.now)
        ends_at = stamp + ends_in if ends_in else 0
        box = seal(self.identity, sealed) if sealed else Sealed(b"", b"")
        assert self.ledger.check_open(item, start, "USDt", time_ms=stamp, ends_at_ms=ends_at,
                                      extend_ms=extend, min_increment=increment,
                                      reserve=reserve, sealed_reserve=box.commitment,
                                      sealed_box=box.box) is None
        self.event(open=Open(item=item, start_amount=start, currency="USDt",
                             ends_at_ms=ends_at, extend_ms=extend, min_increment=increment,
                             reserve=reserve, sealed_reserve=box.commitment,
                             sealed_reserve_box=box.box))
        return AuctionKey(self.node_id, len(self.log))

    def signed_bid(self, who: Identity, key: AuctionKey, amount: str) -> SignedBid:
        self.nonce += 1
        return make_signed_bid(who, key, amount, "USDt", self.nonce, self.now)

    def try_bid(self, who: Identity, key: AuctionKey, amount: str) -> Rejection | SignedEvent:
        """What the seller's node does with a bid at ``now``: refuse it, or accept it."""
        bid = self.signed_bid(who, key, amount)
        stamp = self.ledger.stamp(self.node_id, self.now)
        rejection = self.ledger.check_bid(bid, self.node_id, stamp)
        if rejection is not None:
            return rejection
        return self.event(stamp, accept=Accept(bid=bid))

    def close(self, key: AuctionKey) -> SignedEvent:
        """Close ``key``, revealing its sealed reserve if it has one (as the node does)."""
        assert self.ledger.check_close(key, self.node_id) is None
        auction = self.ledger.auction(key)
        assert auction is not None
        terms = auction.terms
        if not terms.sealed_reserve:
            return self.event(close=Close(auction=key.message()))
        reveal = open_box(self.identity, Sealed(terms.sealed_reserve, terms.sealed_box))
        assert reveal is not None
        return self.event(close=Close(auction=key.message(), reserve=reveal.reserve,
                                      reserve_key=reveal.key))

    def forge(self, time_ms: int, **body: object) -> SignedEvent:
        """A validly signed next event stamped ``time_ms``, NOT checked or applied here:
        what a cheating seller could publish."""
        ident = self.identity
        event = Event(author=ident.node_id, seq=len(self.log) + 1,
                      prev=self.ledger.head_hash(ident.node_id), time_ms=time_ms,
                      author_name=ident.name, **body)  # type: ignore[arg-type]
        return sign_event(ident, event)


def outcome(ledger: Ledger) -> object:
    """Everything timed auctions must agree on across nodes, in a comparable form."""
    return [
        (a.key, a.terms, a.ends_ms, a.closed, a.closed_ms, a.ended_by_time, a.reserve_met,
         a.reserve,
         None if a.winner is None else (a.winner.bidder, a.winner.amount),
         [(b.bidder, b.amount, b.time_ms) for b in a.bids])
        for a in ledger.auctions(include_closed=True)
    ]
