"""Initial sync and anti-entropy: pull from peers whatever events we lack.

A pull sends our heads (author -> highest seq held) and receives, in pages,
every event the peer holds past them, for any author: events are
self-certifying, so any peer can relay any other node's log (DESIGN.md
section 4). Pulls are idempotent, which is what makes anti-entropy safe to
repeat: missed pushes heal on the next round.
"""

from __future__ import annotations

import gc
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import trio

from peer.gen.auction.v1 import Head, SignedEvent, SyncReply, SyncRequest
from peer.net.batch_verify import IncomingBatch
from peer.net.mesh import Mesh, PeerLink
from peer.net.rpc import StorageUnavailable
from peer.net.verify_pool import open_verify_pool

log = logging.getLogger(__name__)

# The longest wait for the next page of a Sync stream.
PAGE_TIMEOUT = 30.0
PAGE_SIZE = 500
#: Pages received, decoded and being verified while an earlier one is applied and
#: made durable. Verification (worker threads) then overlaps the apply (the trio
#: thread) and the commit's fsync (the store's writer thread) instead of waiting
#: for them; more pages ahead only cost memory.
PAGES_AHEAD = 2


class SyncTarget(Protocol):
    """The node side of a pull: what we hold and where new events go."""

    def heads(self) -> list[Head]: ...

    def prepare(self, events: list[SignedEvent]) -> IncomingBatch: ...

    async def commit(self, batch: IncomingBatch, source: PeerLink | None) -> int: ...


async def pull(target: SyncTarget, mesh: Mesh, link: PeerLink) -> int:
    """Pull everything ``link`` has past our heads; returns how many events were new.

    A long history takes as long as it takes; what is bounded is the wait for the
    next page (``PAGE_TIMEOUT``), so a stalled peer is given up on and a busy one
    is not.

    Pages are pipelined: while one is committed (applied, persisted, announced),
    up to ``PAGES_AHEAD`` later ones are decoded and their signatures checked on
    worker threads. Pages are committed in the order received, and a page that
    arrived before the stream failed is still committed.
    """
    request = SyncRequest(heads=target.heads())
    new = 0
    failure: Exception | None = None
    scope = trio.CancelScope(deadline=trio.current_time() + PAGE_TIMEOUT)
    send, receive = trio.open_memory_channel[IncomingBatch](PAGES_AHEAD)

    def progress() -> None:
        scope.deadline = trio.current_time() + PAGE_TIMEOUT

    with scope, _sparing_the_collector() as spare:
        async with open_verify_pool() as pool, trio.open_nursery() as nursery:

            async def on_page(reply: SyncReply) -> None:
                batch = target.prepare(list(reply.events))
                nursery.start_soon(batch.verify, pool)
                progress()
                await send.send(batch)

            async def receive_pages() -> None:
                nonlocal failure
                async with send:
                    try:
                        await mesh.bridge.collect_stream(lambda: link.stub.sync(request),
                                                         on_page)
                    except Exception as exc:
                        if failure is None:  # else the commit failed first: report that
                            failure = exc

            nursery.start_soon(receive_pages)
            async with receive:
                async for batch in receive:
                    try:
                        added = await target.commit(batch, link)
                    except Exception as exc:
                        failure = exc
                        nursery.cancel_scope.cancel()  # the stream and the pages ahead
                        break
                    new += added
                    if added:
                        spare()
                    progress()
    if isinstance(failure, StorageUnavailable):
        # Our disk said no, not the peer: it stays up, and we pull again later.
        log.debug("sync from %s stopped after %d events: %s", link.address, new, failure)
    elif failure is not None:
        mesh.mark_down(link, failure)
        log.debug("sync from %s failed after %d events: %s", link.address, new, failure)
    if scope.cancelled_caught:
        mesh.mark_down(link, f"sync stalled for {PAGE_TIMEOUT:.0f}s")
    return new


@contextmanager
def _sparing_the_collector() -> Iterator[Callable[[], None]]:
    """Yields ``spare``: called after a commit, it moves every object alive so far
    out of the cyclic garbage collector's passes (``gc.freeze``); on exit, if it was
    called, they go back (``gc.unfreeze``), so cycles that died meanwhile are still
    reclaimed.

    Why: a full collection walks every tracked object, and runs again each time the
    survivors grow by a quarter. A sync grows the ledger by 100,000 events' worth of
    objects that live as long as the node, so the collector kept re-walking them
    (about a tenth of the trio thread's time) and never found garbage there.
    """
    frozen = False

    def spare() -> None:
        nonlocal frozen
        gc.freeze()
        frozen = True

    try:
        yield spare
    finally:
        if frozen:
            gc.unfreeze()


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
