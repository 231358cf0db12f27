"""The open timed auctions by end (peer.core.end_queue): what the deadline loop is told
stays what a sort of every open timed auction says, while ends move and auctions close."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peer.core.auctions import AuctionKey
from peer.core.end_queue import EndQueue
from peer.core.ledger import Ledger
from tests.unit.test_ledger_timed_props import Step, play, steps
from tests.unit.timed_support import T0

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

KEYS = [AuctionKey(bytes([i]) * 32, i + 1) for i in range(6)]

# (what, key, end): set an end (add or move), move it only if queued, discard (close),
# or ask at time `end`.
queue_ops = st.lists(st.tuples(st.sampled_from(["set", "set", "move", "discard", "due"]),
                               st.sampled_from(KEYS), st.integers(0, 12)),
                     max_size=400)


def expected(ends: dict[AuctionKey, int], now: int) -> tuple[list[AuctionKey], int | None]:
    ordered = sorted((end, key) for key, end in ends.items())
    later = [end for end, _ in ordered if end > now]
    return [key for end, key in ordered if end <= now], (later[0] if later else None)


@SETTINGS
@given(queue_ops)
def test_the_queue_answers_what_a_sort_of_the_current_ends_answers(
        ops: list[tuple[str, AuctionKey, int]]) -> None:
    # A few keys and ends, many moves: ends move away and back (equal stale entries)
    # and the heap is rebuilt many times over.
    queue, ends = EndQueue(), {}
    for what, key, end in ops:
        if what == "set":
            queue.set(key, end)
            ends[key] = end
        elif what == "move":
            queue.move(key, end)
            if key in ends:
                ends[key] = end
        elif what == "discard":
            queue.discard(key)
            ends.pop(key, None)
        else:
            assert queue.due(end) == expected(ends, end)
        assert len(queue) == len(ends) and all(k in queue for k in ends)
        assert len(queue._heap) <= 2 * len(ends) + 64 + 1
    assert queue.in_order() == sorted(ends, key=lambda k: (ends[k], k))


def test_an_extended_end_is_due_at_its_new_time_only() -> None:
    queue = EndQueue()
    first, second = KEYS[:2]
    queue.set(first, 1_000)
    queue.set(second, 1_500)
    assert queue.due(999) == ([], 1_000)
    queue.set(first, 2_000)  # a late bid moved it past the other one
    assert queue.due(1_000) == ([], 1_500)
    assert queue.due(1_500) == ([second], 2_000)
    assert queue.due(1_600) == ([second], 2_000)  # still open: still due
    queue.discard(second)  # closed
    assert queue.due(1_600) == ([], 2_000)
    assert queue.due(2_000) == ([first], None)
    queue.discard(first)
    assert queue.due(10**15) == ([], None) and len(queue) == 0


def brute_force(ledger: Ledger, now: int) -> tuple[list[AuctionKey], int | None]:
    """What timed_open_due must say, from every auction and no queue."""
    open_timed = sorted((a.ends_ms, a.key) for a in ledger.auctions() if a.terms.timed)
    later = [end for end, _ in open_timed if end > now]
    return [key for end, key in open_timed if end <= now], (later[0] if later else None)


def check(ledger: Ledger) -> None:
    """timed_open_due agrees with the brute force around every end and far from all."""
    times = {T0 - 1, T0 + 10**9}
    for auction in ledger.auctions(include_closed=True):
        times.update((auction.ends_ms - 1, auction.ends_ms, auction.ends_ms + 1))
    for now in sorted(times):
        due, following = ledger.timed_open_due(now)
        assert ([a.key for a in due], following) == brute_force(ledger, now)
    assert ([a.key for a in ledger.timed_open_auctions()]
            == brute_force(ledger, 2**63)[0])


@SETTINGS
@given(steps, st.randoms(use_true_random=False))
def test_timed_open_due_follows_extensions_closes_and_undos_in_any_order(
        script: list[Step], rnd: random.Random) -> None:
    sellers, _ = play(script)  # opens, bids that extend ends, closes, clocks that jump
    events = [e for s in sellers for e in s.log]
    rnd.shuffle(events)  # gaps: events held, then released in bursts
    replica = Ledger()
    applied = []
    for signed in events:
        applied.extend(replica.apply(signed).applied)
        check(replica)
    # Undo from the newest (ends move back, closed auctions reopen), then redo.
    undone = list(reversed(applied))[:rnd.randint(0, len(applied))]
    for event in undone:
        replica.undo(event)
        check(replica)
    for event in reversed(undone):
        assert replica.apply(event.signed).rejection is None
        check(replica)
    for seller in sellers:
        check(seller.ledger)
