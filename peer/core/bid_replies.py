"""What a seller's answer to a bid must prove, and the signed rejection.

A bidder shows its user only an answer the seller's key vouches for, whichever
connection carried it: an ``Accept`` is an event of the seller's log (signed by
the seller, holding exactly the bid sent), and a refusal carries the seller's
signature over the refused bid, the code and the reason. So a refusal can also be
shown to anyone as the seller's own word: "seller S refused this bid, because ...".
It binds the bid's exact bytes and signature, so it cannot be replayed against
another bid.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

from peer.core.identity import Identity, verify
from peer.core.rules import Rejection
from peer.core.signed_events import DecodedEvent, decode_signed
from peer.core.wire import AcceptBody
from peer.gen.auction.v1 import PlaceBidReply, SignedBid
from peer.gen.auction.v1 import Rejection as RejectionMsg

__all__ = ["REJECTION_CONTEXT", "check_bid_reply", "rejection_message", "signed_rejection"]

REJECTION_CONTEXT: Final = b"auction-peer/rejection/v1\x00"


def rejection_message(bid: SignedBid, code: int, reason: str) -> bytes:
    """The bytes a seller signs to refuse ``bid``."""
    digest = hashlib.sha256(struct.pack(">I", len(bid.bid)) + bid.bid + bid.signature).digest()
    return REJECTION_CONTEXT + digest + struct.pack(">I", int(code)) + reason.encode("utf-8")


def signed_rejection(identity: Identity, bid: SignedBid, rejection: RejectionMsg
                     ) -> PlaceBidReply:
    signature = identity.sign(rejection_message(bid, rejection.code, rejection.reason))
    return PlaceBidReply(rejected=rejection, rejection_signature=signature)


def check_bid_reply(seller: bytes, bid: SignedBid, reply: PlaceBidReply) -> str | None:
    """Why ``reply`` does not prove to be ``seller``'s answer to ``bid``; None if it does.

    ``bid`` is one the caller signed itself: an ``Accept`` that passes holds exactly its
    bytes and signature, so every signature in it has been checked (the seller's here,
    the bidder's when it was made) and it may be applied with ``verified=True``.
    """
    if reply.accepted is not None:
        decoded = decode_signed(reply.accepted)
        if not isinstance(decoded, DecodedEvent):
            return f"the Accept is malformed: {decoded}"
        fields = decoded.fields
        body = fields.body
        if fields.author != seller:
            return "the Accept is not an event of the seller's log"
        if (not isinstance(body, AcceptBody) or body.bid != bid.bid
                or body.signature != bid.signature):
            return "the Accept does not hold the bid that was sent"
        if isinstance(decoded.body(), Rejection):
            return f"the Accept is malformed: {decoded.body()}"
        # One check: the bid inside is byte for byte the one the bidder signed and sent.
        if not verify(seller, reply.accepted.event, reply.accepted.signature):
            return "the Accept is not signed by the seller"
        return None
    if reply.rejected is not None:
        message = rejection_message(bid, reply.rejected.code, reply.rejected.reason)
        if not verify(seller, message, reply.rejection_signature):
            return "the refusal is not signed by the seller"
        return None
    return "the reply is empty"
