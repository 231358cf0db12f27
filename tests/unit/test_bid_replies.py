"""A bidder shows only an answer the seller's key vouches for."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from peer.core.auctions import AuctionKey
from peer.core.bid_replies import check_bid_reply, signed_rejection
from peer.core.identity import Identity
from peer.core.signed_events import make_signed_bid, sign_event
from peer.gen.auction.v1 import Accept, Event, PlaceBidReply, RejectCode, Rejection, SignedEvent

SELLER = Identity.from_seed(b"\x01" * 32, "Client#1")
BIDDER = Identity.from_seed(b"\x02" * 32, "Client#2")
MALLORY = Identity.from_seed(b"\x03" * 32, "Mallory")
KEY = AuctionKey(SELLER.node_id, 1)
BID = make_signed_bid(BIDDER, KEY, "75", "USDt", 1, 1_000)
OTHER_BID = make_signed_bid(BIDDER, KEY, "75", "USDt", 2, 1_000)


def _accept(author: Identity, bid: object = BID) -> PlaceBidReply:
    event = Event(author=author.node_id, seq=2, prev=b"\x00" * 32, time_ms=1_001,
                  author_name=author.name, accept=Accept(bid=bid))  # type: ignore[arg-type]
    return PlaceBidReply(accepted=sign_event(author, event))


def test_the_sellers_answers_pass() -> None:
    refusal = signed_rejection(SELLER, BID, Rejection(code=RejectCode.BID_TOO_LOW,
                                                      reason="best is 80 USDt"))
    assert check_bid_reply(SELLER.node_id, BID, refusal) is None
    assert check_bid_reply(SELLER.node_id, BID, _accept(SELLER)) is None


def test_answers_the_seller_did_not_give_are_refused() -> None:
    censored = PlaceBidReply(rejected=Rejection(code=RejectCode.BID_TOO_LOW, reason="censored"))
    assert "not signed" in str(check_bid_reply(SELLER.node_id, BID, censored))
    by_mallory = signed_rejection(MALLORY, BID, Rejection(code=RejectCode.BID_TOO_LOW,
                                                          reason="censored"))
    assert check_bid_reply(SELLER.node_id, BID, by_mallory) is not None
    # A real refusal of another bid is no refusal of this one.
    other = signed_rejection(SELLER, OTHER_BID, Rejection(code=RejectCode.BID_TOO_LOW,
                                                          reason="best is 80 USDt"))
    assert check_bid_reply(SELLER.node_id, BID, other) is not None
    assert "not an event of the seller" in str(check_bid_reply(SELLER.node_id, BID,
                                                               _accept(MALLORY)))
    assert "does not hold the bid" in str(check_bid_reply(SELLER.node_id, BID,
                                                          _accept(SELLER, OTHER_BID)))
    forged = _accept(SELLER)
    assert forged.accepted is not None
    forged.accepted = SignedEvent(event=forged.accepted.event, signature=b"\x00" * 64)
    assert "not signed" in str(check_bid_reply(SELLER.node_id, BID, forged))
    # Signed by the seller and holding the bid as sent, but not a valid Accept.
    bad_bid = make_signed_bid(BIDDER, KEY, "seventy", "USDt", 3, 1_000)
    assert "malformed" in str(check_bid_reply(SELLER.node_id, bad_bid, _accept(SELLER, bad_bid)))
    junk = PlaceBidReply(accepted=SignedEvent(event=b"\xff\xff", signature=b""))
    assert "malformed" in str(check_bid_reply(SELLER.node_id, BID, junk))
    assert check_bid_reply(SELLER.node_id, BID, PlaceBidReply()) == "the reply is empty"


@settings(max_examples=200, deadline=None)
@given(code=st.sampled_from(list(RejectCode)), reason=st.text(max_size=50),
       other_code=st.sampled_from(list(RejectCode)), other_reason=st.text(max_size=50))
def test_a_signed_refusal_says_exactly_what_the_seller_signed(
        code: RejectCode, reason: str, other_code: RejectCode, other_reason: str) -> None:
    reply = signed_rejection(SELLER, BID, Rejection(code=code, reason=reason))
    assert reply.rejected is not None
    changed = replace(reply.rejected, code=other_code, reason=other_reason)
    altered = PlaceBidReply(rejected=changed, rejection_signature=reply.rejection_signature)
    same = (other_code, other_reason) == (code, reason)
    assert (check_bid_reply(SELLER.node_id, BID, altered) is None) == same
