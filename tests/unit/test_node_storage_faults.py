"""A node whose disk says no (full, read-only, I/O error): a state, not a crash.

The OS error is injected in the store's writer thread, where SQLite's own I/O
would fail, so the store's failure path and the node's undo both run for real.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.ledger import Ledger
from peer.core.signed_events import make_signed_bid
from peer.gen.auction.v1 import (
    OpenRequest,
    PushRequest,
    RejectCode,
    ShowRequest,
    SignedEvent,
    SyncRequest,
)
from peer.net.rpc import StorageUnavailable
from peer.node import Node
from peer.storage.store import EventStore
from tests.support import in_process_node
from tests.unit.test_ledger import Author, bid

SELLER = Identity.from_seed(b"\x71" * 32, "Seller")
BIDDER = Identity.from_seed(b"\x72" * 32, "Bidder")


class _Disk:
    """Makes the store's writer thread raise an OSError, as the OS would, until healed."""

    def __init__(self, store: EventStore) -> None:
        self.error: OSError | None = None
        self.good_writes_left = 0  # transactions that still succeed once error is set
        real = store._write

        def write(batch: list) -> int:  # type: ignore[type-arg]
            if self.error is not None:
                if not self.good_writes_left:
                    raise self.error
                self.good_writes_left -= 1
            return real(batch)

        store._write = write  # type: ignore[method-assign]


class _NoMesh:
    def broadcast(self, events: list[SignedEvent], skip: bytes = b"") -> None:
        pass

    def link_for(self, node_id: bytes) -> None:
        return None


@pytest.fixture
def seller(tmp_path: Path) -> Iterator[tuple[Node, _Disk]]:
    store = EventStore.open(tmp_path / "events.sqlite3")
    node = in_process_node(tmp_path, SELLER, store, _NoMesh())
    try:
        yield node, _Disk(store)
    finally:
        store.close()


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("peer.node") and r.levelno == level]


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EROFS, errno.EIO])
async def test_writes_are_refused_with_the_os_reason_and_taken_again_once_it_heals(
        seller: tuple[Node, _Disk], caplog: pytest.LogCaptureFixture, error: int) -> None:
    node, disk = seller
    caplog.set_level(logging.INFO)
    opened = await node.control_open(OpenRequest(item="Pic#1", start_amount="10",
                                                 currency="USDt"))
    assert opened.auction is not None
    key = opened.auction.id

    disk.error = OSError(error, os.strerror(error))
    for amount in ("10", "11", "12"):  # several refused writes, one outage
        placed = await node.on_place_bid(make_signed_bid(BIDDER, _key(node), amount, "USDt",
                                                         int(amount), 0))
        assert placed.rejected is not None
        assert placed.rejected.code == RejectCode.STORAGE_UNAVAILABLE
        assert os.strerror(error) in placed.rejected.reason
        assert str(node.config.data_dir) not in placed.rejected.reason  # no local paths
    refused = await node.control_open(OpenRequest(item="Pic#2", start_amount="1",
                                                  currency="USDt"))
    assert refused.rejected is not None
    assert refused.rejected.code == RejectCode.STORAGE_UNAVAILABLE
    assert os.strerror(error) in refused.rejected.reason

    # Reads and syncs go on, and show nothing that was refused.
    shown = await node.control_show(ShowRequest(auction=key))
    assert shown.auction is not None and shown.auction.bids == []
    page, cursor = await node.on_sync_page(SyncRequest(), None)
    assert len(page.events) == 1 and cursor is None
    assert node.ledger.event_count == 1

    errors = _records(caplog, logging.ERROR)
    assert len(errors) == 1 and os.strerror(error) in errors[0], errors

    disk.error = None  # space is back: the next write goes through, no restart
    placed = await node.on_place_bid(make_signed_bid(BIDDER, _key(node), "10", "USDt", 99, 0))
    assert placed.accepted is not None
    infos = [m for m in _records(caplog, logging.INFO) if "writable again" in m]
    assert len(infos) == 1
    assert len(_records(caplog, logging.ERROR)) == 1
    assert node.ledger.heads() == {SELLER.node_id: 2}
    _assert_memory_is_disk(node)


async def test_a_push_during_an_outage_is_refused_and_leaves_no_trace(
        seller: tuple[Node, _Disk]) -> None:
    node, disk = seller
    remote = Author(Identity.from_seed(b"\x73" * 32, "Remote"))
    auction = remote.open("Vase", "5")
    remote.accept(bid(BIDDER, auction, "6", 1))
    disk.error = _disk_full()
    with pytest.raises(StorageUnavailable, match="No space left on device"):
        await node.on_push(PushRequest(events=remote.log))
    assert node.ledger.event_count == 0 and node.heads() == []
    disk.error = None
    await node.on_push(PushRequest(events=remote.log))
    assert node.ledger.heads() == {remote.identity.node_id: 2}
    _assert_memory_is_disk(node)


async def test_an_outage_during_concurrent_bids_undoes_exactly_the_refused_ones(
        seller: tuple[Node, _Disk]) -> None:
    node, disk = seller
    for n in range(8):  # one auction per bid: no bid is refused by the rules
        await node.control_open(OpenRequest(item=f"Pic#{n}", start_amount="1",
                                            currency="USDt"))
    keys = [a.key for a in node.ledger.auctions()]
    outcomes: list[RejectCode | None] = []

    async def place(key: AuctionKey) -> None:
        placed = await node.on_place_bid(make_signed_bid(BIDDER, key, "1", "USDt", 1, 0))
        outcomes.append(None if placed.rejected is None else placed.rejected.code)

    # The first bid's transaction goes through; the disk fills up under the next one,
    # which holds the seven bids that queued meanwhile.
    disk.error, disk.good_writes_left = _disk_full(), 1
    async with trio.open_nursery() as nursery:
        for key in keys:
            nursery.start_soon(place, key)
    assert sorted(outcomes, key=str) == [None] + [RejectCode.STORAGE_UNAVAILABLE] * 7
    disk.error = None
    _assert_memory_is_disk(node)
    assert sum(len(a.bids) for a in node.ledger.auctions()) == outcomes.count(None)


def _key(node: Node) -> AuctionKey:
    return node.ledger.auctions()[0].key


def _assert_memory_is_disk(node: Node) -> None:
    assert node.store is not None
    rebuilt = Ledger()
    for row in node.store.load_all():
        assert rebuilt.apply(SignedEvent(event=row.data, signature=row.signature),
                             verified=True).rejection is None
    assert rebuilt.heads() == node.ledger.heads()
    assert [(a.key, len(a.bids), a.closed) for a in rebuilt.auctions(True)] == \
        [(a.key, len(a.bids), a.closed) for a in node.ledger.auctions(True)]
