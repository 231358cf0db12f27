"""Timed auctions (hypothesis): the same logs in any arrival order give every node the same
end, winner and reserve outcome, and a late Accept is refused everywhere."""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.ledger import Ledger
from peer.core.rules import Rejection, format_amount, parse_duration
from peer.core.signed_events import sign_event
from peer.gen.auction.v1 import Accept, Event, Open, RejectCode, SignedEvent
from tests.unit.timed_support import ClockedAuthor, outcome

PEOPLE = [Identity.from_seed(bytes([i + 1]) * 32, f"Client#{i + 1}") for i in range(4)]
SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

Step = tuple[str, int, int, int, int]
# (kind, actor, choice, who, size): opens pick their terms with `choice` and `size`,
# bids go to the seller of auction `choice`, ticks move `actor`'s clock (also back).
steps = st.lists(
    st.tuples(st.sampled_from(["open", "bid", "bid", "bid", "tick", "tick", "close"]),
              st.integers(0, 2), st.integers(0, 11), st.integers(0, 3), st.integers(0, 5)),
    min_size=3, max_size=40)
TICKS = [0, 1, 300, 999, 2_500, -700]
ENDS_IN = [0, 1_000, 3_000]
EXTEND = [0, 500, 2_000]


def play(script: list[Step]) -> tuple[list[ClockedAuthor], list[SignedEvent]]:
    """Three sellers follow the script; returns them and one forged late Accept per
    seller that has an auction past its end (what a cheating seller could sign)."""
    sellers = [ClockedAuthor(p) for p in PEOPLE[:3]]
    opened: list[AuctionKey] = [s.open("First", "10", ends_in=2_000, extend=500,
                                       reserve="12") for s in sellers]
    by_id = {s.node_id: s for s in sellers}
    for kind, actor, choice, who, size in script:
        if kind == "open":
            seller = sellers[actor]
            ends_in = ENDS_IN[choice % 3]
            opened.append(seller.open(f"Item{len(opened)}", "10", ends_in=ends_in,
                                      extend=EXTEND[size % 3] if ends_in else 0,
                                      increment="1" if who % 2 else "",
                                      reserve="15" if who == 2 else "",
                                      sealed="15" if who == 3 else ""))
        elif kind == "tick":
            sellers[actor].now += TICKS[size]
        else:
            key = opened[choice % len(opened)]
            seller = by_id[key.author]
            auction = seller.ledger.auction(key)
            assert auction is not None
            if kind == "close":
                if not auction.closed:
                    seller.close(key)
                continue
            step = Decimal(size) / 2
            best = auction.best
            amount = (auction.start_amount + step if best is None
                      else best.amount + (auction.terms.min_increment or Decimal("0.5")) + step)
            result = seller.try_bid(PEOPLE[who], key, format_amount(amount))
            if isinstance(result, Rejection):
                assert result.code in (RejectCode.AUCTION_ENDED, RejectCode.AUCTION_CLOSED,
                                       RejectCode.SELF_BID), result
    cheats = []
    for seller in sellers:
        for auction in seller.ledger.timed_open_auctions():
            late = max(auction.ends_ms, seller.ledger.stamp(seller.node_id, seller.now))
            bidder = PEOPLE[3]
            amount = (auction.best.amount + 100) if auction.best else auction.start_amount
            bid = seller.signed_bid(bidder, auction.key, format_amount(amount))
            cheats.append(seller.forge(late, accept=Accept(bid=bid)))
            break  # one per seller: each is the next seq of its log
    return sellers, cheats


@SETTINGS
@given(steps, st.randoms(use_true_random=False), st.integers(0, 3))
def test_any_arrival_order_gives_the_same_end_winner_and_reserve_outcome(
        script: list[Step], rnd: random.Random, dups: int) -> None:
    sellers, cheats = play(script)
    reference = Ledger()
    for seller in sellers:
        for signed in seller.log:
            assert reference.apply(signed).rejection is None
    # Each seller's own view of its auctions is what every other node derives.
    for seller in sellers:
        own = [entry for entry in outcome(reference)  # type: ignore[attr-defined]
               if entry[0].author == seller.node_id]
        assert own == outcome(seller.ledger)

    events = [e for s in sellers for e in s.log]
    delivery = events + [rnd.choice(events) for _ in range(dups * len(events) // 3)] + cheats
    rnd.shuffle(delivery)
    replica = Ledger()
    refused_late = 0
    for signed in delivery:
        result = replica.apply(signed)
        if result.rejection is not None:
            assert result.rejection.code == RejectCode.AUCTION_ENDED, result.rejection
            refused_late += 1
    assert outcome(replica) == outcome(reference)
    assert replica.heads() == reference.heads()
    assert replica.forks() == []
    # Every late Accept was refused, either on arrival or when its gap was filled.
    assert refused_late + replica.dropped_count == len(cheats)
    for cheat in cheats:
        assert not replica.is_applied(cheat)


@SETTINGS
@given(steps)
def test_the_current_end_follows_from_the_open_and_the_accepts_alone(script: list[Step]) -> None:
    sellers, _ = play(script)
    node = Ledger()
    for seller in sellers:
        for signed in seller.log:
            node.apply(signed)
    for auction in node.auctions(include_closed=True):
        terms = auction.terms
        end = terms.ends_at_ms
        for bid in auction.bids:
            assert not end or bid.time_ms < end  # no Accept at or after the end of its time
            if terms.extend_ms:
                end = max(end, bid.time_ms + terms.extend_ms)
        assert auction.ends_ms == end
        if auction.closed:
            best = auction.best
            reserve = auction.reserve
            met = best is not None and (reserve is None or best.amount >= reserve)
            assert auction.reserve_met == met
            assert (auction.winner is not None) == met
        if terms.sealed_reserve:
            # Revealed by the Close, and only by it.
            assert (auction.reserve is not None) == auction.closed


i64 = st.integers(-(2**63), 2**63 - 1)


@SETTINGS
@given(i64, i64, i64, st.text(max_size=40), st.text(max_size=40))
def test_any_terms_from_a_peer_are_applied_or_refused_never_a_crash(
        time_ms: int, ends_at: int, extend: int, increment: str, reserve: str) -> None:
    seller = PEOPLE[0]
    event = Event(author=seller.node_id, seq=1, time_ms=time_ms, author_name=seller.name,
                  open=Open(item="Pic", start_amount="1", currency="USDt", ends_at_ms=ends_at,
                            extend_ms=extend, min_increment=increment, reserve=reserve))
    ledger = Ledger()
    result = ledger.apply(sign_event(seller, event))
    if result.rejection is not None:
        assert result.rejection.code in (RejectCode.BAD_TERMS, RejectCode.BAD_EVENT)
        assert ledger.heads() == {}
    else:
        (auction,) = ledger.auctions()
        assert auction.ends_ms == ends_at and (ends_at == 0 or ends_at > time_ms)
        assert auction.terms.extend_ms >= 0
        assert auction.has_ended(time_ms) is False
    assert isinstance(parse_duration(increment), int | str)


@SETTINGS
@given(steps, st.randoms(use_true_random=False))
def test_undoing_the_newest_events_gives_back_ends_closes_and_reveals(
        script: list[Step], rnd: random.Random) -> None:
    sellers, _ = play(script)
    kept = {s.node_id: rnd.randint(0, len(s.log)) for s in sellers}
    prefix, replica = Ledger(), Ledger()
    applied = []
    for seller in sellers:
        for signed in seller.log[:kept[seller.node_id]]:
            assert prefix.apply(signed).rejection is None
        for signed in seller.log:
            applied.extend(replica.apply(signed).applied)
    undone = [e for e in reversed(applied) if e.seq > kept[e.author]]
    for event in undone:
        replica.undo(event)
    assert outcome(replica) == outcome(prefix)
    assert ([a.key for a in replica.timed_open_auctions()]
            == [a.key for a in prefix.timed_open_auctions()])
    for event in reversed(undone):
        assert replica.apply(event.signed).rejection is None
    reference = Ledger()
    for seller in sellers:
        for signed in seller.log:
            reference.apply(signed)
    assert outcome(replica) == outcome(reference)
    assert replica.has_timed_open == reference.has_timed_open
