"""The mesh's address set stays bounded whatever Grape answers, and `status` shows nodes."""

from __future__ import annotations

import random
from typing import Any, cast

import trio
import trio.testing

from devsupport.serving import QuietMeshHooks
from peer.core.identity import Identity
from peer.net.address_book import AddressLimits, admit, describe_failure, peer_views
from peer.net.aio import Bridge
from peer.net.mesh import DOWN, UP, Mesh

LIMITS = AddressLimits(max_known=50, max_new_per_lookup=10, forget_after=60.0)



def _mesh(limits: AddressLimits = LIMITS) -> Mesh:
    # No nursery: add_addresses records links without starting probes.
    return Mesh(Identity.generate("me"), "127.0.0.1:1", QuietMeshHooks(), cast(Bridge, None),
                limits)


def _junk(start: int, count: int) -> list[str]:
    return [f"127.9.{n // 250}.{n % 250}:{1000 + n}" for n in range(start, start + count)]


def test_one_lookup_adds_at_most_its_share_and_never_own_or_known() -> None:
    async def main() -> None:
        mesh = _mesh()
        new = mesh.add_addresses(["127.0.0.1:1", *_junk(0, 20_000)])
        assert len(new) == LIMITS.max_new_per_lookup
        assert "127.0.0.1:1" not in mesh.links
        again = mesh.add_addresses([link.address for link in new])
        assert again == []

    trio.run(main)


def test_endless_new_addresses_stay_within_the_cap_and_answered_peers_stay() -> None:
    async def main() -> None:
        mesh = _mesh()
        honest = mesh.add_addresses(["127.0.0.1:7000"])[0]
        honest.node_id, honest.name = b"honest", "Client#2"
        mesh._mark_up(honest)
        for lookup in range(100):
            for link in mesh.add_addresses(_junk(lookup * 1000, 1000)):
                mesh.mark_down(link, ConnectionRefusedError(111, "Connect call failed"))
            assert len(mesh.links) <= LIMITS.max_known
            await trio.sleep(1)
        assert mesh.links["127.0.0.1:7000"].state == UP

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_addresses_down_long_enough_are_forgotten_and_not_taken_back_at_once() -> None:
    async def main() -> None:
        mesh = _mesh()
        (dead,) = mesh.add_addresses(["127.9.9.9:5000"])
        mesh.mark_down(dead, ConnectionRefusedError(111, "Connect call failed"))
        await trio.sleep(LIMITS.forget_after - 1)
        mesh.add_addresses([])
        assert "127.9.9.9:5000" in mesh.links  # not yet
        await trio.sleep(2)
        assert mesh.add_addresses(["127.9.9.9:5000"]) == []
        assert "127.9.9.9:5000" not in mesh.links
        await trio.sleep(LIMITS.forget_after + 1)
        assert [link.address for link in mesh.add_addresses(["127.9.9.9:5000"])] \
            == ["127.9.9.9:5000"]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_peer_that_comes_back_up_is_not_forgotten() -> None:
    async def main() -> None:
        mesh = _mesh()
        (link,) = mesh.add_addresses(["127.9.9.9:5000"])
        link.node_id = b"x"
        mesh.mark_down(link, "refused")
        await trio.sleep(LIMITS.forget_after / 2)
        mesh._mark_up(link)
        mesh.mark_down(link, "refused")  # down again: the clock restarts
        await trio.sleep(LIMITS.forget_after / 2 + 1)
        mesh.add_addresses([])
        assert "127.9.9.9:5000" in mesh.links

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_admit_samples_instead_of_always_taking_the_first() -> None:
    picks = {tuple(admit({}, _junk(0, 100), "", {}, 0.0, LIMITS, random.Random(seed))[0])
             for seed in range(5)}
    assert len(picks) > 1


class _Link:
    def __init__(self, **fields: Any) -> None:
        self.address = "a:1"
        self.node_id = b""
        self.name = ""
        self.state = DOWN
        self.retry_at = 5.0
        self.down_since = 0.0
        self.since = 0.0
        self.reason = "refused"
        self.__dict__.update(fields)


def test_status_shows_one_line_per_node_with_its_live_address() -> None:
    links = [
        _Link(address="a:1", node_id=b"n1", name="Client#1", state=DOWN, since=10.0),
        _Link(address="a:2", node_id=b"n1", name="Client#1", state=UP, since=5.0),
        _Link(address="b:1", node_id=b"n2", name="Client#2", state=DOWN, since=3.0),
        _Link(address="b:2", node_id=b"n2", name="Client#2", state=DOWN, since=7.0),
        _Link(address="c:1"), _Link(address="c:2"),
        _Link(address="d:1", node_id=b"me", state="self"),
    ]
    views, unanswered = peer_views(cast(Any, links), now=1.0)
    assert [(v.name, v.state, v.address) for v in views] == [
        ("Client#1", "up", "a:2"), ("Client#2", "down", "b:2")]
    assert views[1].detail == "refused, retry in 4s"
    assert unanswered == 2


def test_failure_reasons_are_short_words_not_errno_text() -> None:
    assert describe_failure(ConnectionRefusedError(111, "Connect call failed "
                                                   "('127.0.0.1', 5)")) == "refused"
    assert describe_failure(TimeoutError()) == "no answer"
    assert describe_failure(trio.TooSlowError()) == "no answer"
    assert describe_failure(ConnectionResetError()) == "connection lost"
    assert describe_failure(OSError(113, "No route to host")) == "unreachable"
    assert describe_failure("left") == "left"


def test_a_full_set_of_young_junk_is_not_churned() -> None:
    async def main() -> None:
        mesh = _mesh()
        for lookup in range(10):
            for link in mesh.add_addresses(_junk(lookup * 1000, 1000)):
                mesh.mark_down(link, "refused")
        assert len(mesh.links) == LIMITS.max_known
        # Full of addresses down for less than evict_after: a new lookup adds nothing.
        assert mesh.add_addresses(_junk(50_000, 1000)) == []
        await trio.sleep(LIMITS.evict_after)
        assert len(mesh.add_addresses(_junk(60_000, 1000))) == LIMITS.max_new_per_lookup

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_probes_of_addresses_that_never_answered_are_paced() -> None:
    limits = AddressLimits(max_known=1000, max_new_per_lookup=1000, probe_rate=20,
                           probe_burst=50)

    async def main() -> None:
        mesh = _mesh(limits)  # no bridge: every probe fails at once
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            mesh.add_addresses(_junk(0, 500))
            await trio.sleep(1.0)
            probed = sum(link.state == DOWN for link in mesh.links.values())
            assert 50 + 15 <= probed <= 50 + 25  # the burst, then ~20 a second
            await trio.sleep(30)
            assert all(link.state == DOWN for link in mesh.links.values())
            assert all(link.backoff.cap >= 300 for link in mesh.links.values())
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
