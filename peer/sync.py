"""Initial sync and anti-entropy: pull from peers whatever events we lack.

A pull sends our heads (author -> highest seq held) and receives, in pages,
every event the peer holds past them, for any author: events are
self-certifying, so any peer can relay any other node's log (DESIGN.md
section 4). Pulls are idempotent, which is what makes anti-entropy safe to
repeat: missed pushes heal on the next round.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from peer.gen.auction.v1 import Head, SignedEvent, SyncReply, SyncRequest
from peer.mesh import Mesh, PeerLink

log = logging.getLogger(__name__)

# The longest wait for the next page of a Sync stream.
PAGE_TIMEOUT = 30.0
PAGE_SIZE = 500


class SyncTarget(Protocol):
    """The node side of a pull: what we hold and where new events go."""

    def heads(self) -> list[Head]: ...

    async def ingest(self, events: list[SignedEvent], source: PeerLink | None) -> int: ...


async def pull(target: SyncTarget, mesh: Mesh, link: PeerLink) -> int:
    """Pull everything ``link`` has past our heads; returns how many events were new.

    A long history takes as long as it takes; what is bounded is the wait for the
    next page (``PAGE_TIMEOUT``), so a stalled peer is given up on and a busy one
    is not.
    """
    request = SyncRequest(heads=target.heads())
    new = 0
    scope = trio.CancelScope(deadline=trio.current_time() + PAGE_TIMEOUT)

    async def on_page(reply: SyncReply) -> None:
        nonlocal new
        new += await target.ingest(list(reply.events), link)
        scope.deadline = trio.current_time() + PAGE_TIMEOUT

    try:
        with scope:
            await mesh.bridge.collect_stream(lambda: link.stub.sync(request), on_page)
    except Exception as exc:
        mesh.mark_down(link, exc)
        log.debug("sync from %s failed after %d events: %s", link.address, new, exc)
    if scope.cancelled_caught:
        mesh.mark_down(link, f"sync stalled for {PAGE_TIMEOUT:.0f}s")
    return new


async def pull_from_all(target: SyncTarget, mesh: Mesh) -> int:
    """Pull from every peer that is up (used before reporting ready).

    One peer first, then the others at once: they then only send what the first
    did not have, instead of every peer sending the whole history again.
    """
    links = mesh.up_links()
    if not links:
        return 0
    first = random.choice(links)
    total = await pull(target, mesh, first)

    async def one(link: PeerLink) -> None:
        nonlocal total
        total += await pull(target, mesh, link)

    async with trio.open_nursery() as nursery:
        for link in links:
            if link is not first:
                nursery.start_soon(one, link)
    return total


async def anti_entropy(target: SyncTarget, mesh: Mesh, interval: float,
                       jitter: Callable[[], float]) -> None:
    """Every ``interval`` (jittered), pull from one random live peer."""
    while True:
        await trio.sleep(interval * jitter())
        link = mesh.random_up()
        if link is not None:
            new = await pull(target, mesh, link)
            if new:
                log.info("anti-entropy: %d new event(s) from %s", new, link.name or link.address)
            link.lagging = False


class PullGate:
    """At most one gap-triggered pull per peer at a time."""

    def __init__(self) -> None:
        self._busy: set[str] = set()

    async def pull_once(self, link: PeerLink, do_pull: Callable[[], Awaitable[int]]) -> None:
        if link.address in self._busy:
            return
        self._busy.add(link.address)
        try:
            await do_pull()
        finally:
            self._busy.discard(link.address)
