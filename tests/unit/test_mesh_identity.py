"""How the mesh maps addresses to proven ids: candidates, duplicates, goodbyes."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import trio

from devsupport.serving import QuietMeshHooks
from peer.core.identity import Identity
from peer.net.aio import Bridge
from peer.net.mesh import DOWN, DUPLICATE, GOODBYE_SKEW_MS, SELF, UP, Mesh, PeerLink

SELLER = Identity.from_seed(b"\x05" * 32, "Client#1").node_id


class _Hooks(QuietMeshHooks):
    def __init__(self) -> None:
        self.down: list[tuple[str, str]] = []

    def peer_down(self, link: PeerLink, reason: str) -> None:
        self.down.append((link.address, reason))


def _mesh(links: list[PeerLink]) -> tuple[Mesh, _Hooks]:
    hooks = _Hooks()
    mesh = Mesh(Identity.generate("me"), "127.0.0.1:1", hooks, cast(Bridge, None))
    for link in links:
        mesh.links[link.address] = link
    return mesh, hooks


def test_only_addresses_that_proved_an_id_are_its_candidates_the_up_one_first() -> None:
    unproven = PeerLink("127.0.0.1:9", state=DOWN)  # claimed SELLER, never proved it
    old = PeerLink("127.0.0.1:10", node_id=SELLER, state=DOWN)
    dup = PeerLink("127.0.0.1:11", node_id=SELLER, state=DUPLICATE)
    up = PeerLink("127.0.0.1:12", node_id=SELLER, state=UP)
    ourselves = PeerLink("127.0.0.1:13", node_id=SELLER, state=SELF)
    mesh, _ = _mesh([unproven, old, dup, up, ourselves])
    candidates = mesh.candidates(SELLER)
    assert candidates[0] is up and set(map(id, candidates)) == {id(old), id(dup), id(up)}
    assert mesh.link_for(SELLER) is up
    assert mesh.candidates(b"\x00" * 32) == []


def test_a_duplicate_is_probed_again_when_the_used_link_goes_down() -> None:
    async def main() -> None:
        up = PeerLink("127.0.0.1:12", node_id=SELLER, state=UP)
        dup = PeerLink("127.0.0.1:11", node_id=SELLER, state=DUPLICATE)
        other = PeerLink("127.0.0.1:14", node_id=b"\x07" * 32, state=DUPLICATE)
        mesh, hooks = _mesh([up, dup, other])
        mesh.mark_down(up, "connection lost")
        assert hooks.down == [("127.0.0.1:12", "connection lost")]
        assert dup.state == DOWN and dup.retry_at <= trio.current_time()  # due now
        assert other.state == DUPLICATE  # another node's duplicate is left alone

    trio.run(main)


def test_a_node_that_proves_itself_to_us_wakes_its_duplicates() -> None:
    async def main() -> None:
        dup = PeerLink("127.0.0.1:11", node_id=SELLER, state=DUPLICATE)
        mesh, _ = _mesh([dup])
        mesh.reprobe_soon(SELLER)
        assert dup.state == DOWN and dup.retry_at <= trio.current_time()

    trio.run(main)


def test_an_old_goodbye_replayed_does_not_take_a_live_link_down() -> None:
    async def main() -> None:
        up = PeerLink("127.0.0.1:12", node_id=SELLER, state=UP, since=time.time())
        mesh, hooks = _mesh([up])
        came_up_ms = int(up.since * 1000)
        mesh.mark_left(SELLER, came_up_ms - GOODBYE_SKEW_MS - 1)  # said before: replayed
        assert up.state == UP and hooks.down == []
        mesh.mark_left(SELLER, came_up_ms - GOODBYE_SKEW_MS + 1000)  # within clock skew
        assert up.state == DOWN and hooks.down == [("127.0.0.1:12", "left")]

    trio.run(main)


def test_broadcast_skips_the_node_that_has_the_events() -> None:
    from peer.gen.auction.v1 import SignedEvent
    from peer.net.mesh import Outbox

    bidder = PeerLink("127.0.0.1:12", node_id=b"\x07" * 32, state=UP)
    other = PeerLink("127.0.0.1:13", node_id=b"\x08" * 32, state=UP)
    for link in (bidder, other):
        link.outbox_send = Outbox(4)
    mesh, _ = _mesh([bidder, other])
    event = SignedEvent(event=b"e", signature=b"s")
    mesh.broadcast([event], skip=bidder.node_id)
    mesh.broadcast([event])

    async def drained(link: PeerLink) -> list[SignedEvent]:
        assert link.outbox_send is not None
        return await link.outbox_send.take(10)

    assert asyncio.run(drained(bidder)) == [event]  # only the second broadcast
    assert asyncio.run(drained(other)) == [event, event]
