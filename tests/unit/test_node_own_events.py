"""The node pushes its own events in seq order, however its group commits resume."""

from __future__ import annotations

import io
import json
from pathlib import Path

import trio
import trio.testing

from peer.config import NodeConfig
from peer.gen.auction.v1 import OpenRequest, SignedEvent
from peer.identity import Identity
from peer.node import Node
from peer.output import Output
from peer.rules import Rejection
from peer.signed_events import decode_signed
from peer.store import StoredEvent


class _StoreFinishingOnCue:
    """Each append waits until the test lets it finish; appends are recorded."""

    def __init__(self) -> None:
        self.waiting: list[tuple[list[StoredEvent], trio.Event]] = []
        self.changed = trio.Event()
        self.fail_seq = 0  # the append holding this seq fails once let go

    async def append(self, events: list[StoredEvent]) -> None:
        done = trio.Event()
        self.waiting.append((events, done))
        self.changed.set()
        await done.wait()
        if events[0].seq == self.fail_seq:
            raise OSError("disk full")


class _RecordingMesh:
    def __init__(self) -> None:
        self.pushed: list[int] = []

    def broadcast(self, events: list[SignedEvent]) -> None:
        for signed in events:
            decoded = decode_signed(signed)
            assert not isinstance(decoded, Rejection), decoded
            self.pushed.append(decoded.fields.seq)


def _node(tmp_path: Path) -> tuple[Node, _StoreFinishingOnCue, _RecordingMesh, io.StringIO]:
    out = io.StringIO()
    node = Node(NodeConfig(name="Seller", data_dir=tmp_path), Output(json_lines=True, stream=out))
    node.identity = Identity.generate("Seller")
    store, mesh = _StoreFinishingOnCue(), _RecordingMesh()
    node.store = store  # type: ignore[assignment]
    node.mesh = mesh  # type: ignore[assignment]
    node._ready = True
    return node, store, mesh, out


async def _open_three_finishing_in_reverse(node: Node, store: _StoreFinishingOnCue,
                                           errors: list[BaseException]) -> None:
    async def open_one(item: str) -> None:
        try:
            await node.control_open(OpenRequest(item=item, start_amount="1", currency="USDt"))
        except OSError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for item in ("Lot#1", "Lot#2", "Lot#3"):
            nursery.start_soon(open_one, item)
        with trio.fail_after(5):
            while len(store.waiting) < 3:
                store.changed = trio.Event()
                await store.changed.wait()
        for _, done in reversed(store.waiting):
            done.set()
            await trio.testing.wait_all_tasks_blocked()


async def test_own_events_are_pushed_and_printed_in_seq_order(tmp_path: Path) -> None:
    node, store, mesh, out = _node(tmp_path)
    errors: list[BaseException] = []
    await _open_three_finishing_in_reverse(node, store, errors)
    assert errors == []
    assert [events[0].seq for events, _ in store.waiting] == [1, 2, 3]
    assert mesh.pushed == [1, 2, 3]
    ids = [json.loads(line)["auction"]["id"] for line in out.getvalue().splitlines()]
    assert [int(i.rpartition(":")[2]) for i in ids] == [1, 2, 3]


async def test_a_failed_commit_does_not_hold_back_the_later_events(tmp_path: Path) -> None:
    node, store, mesh, _ = _node(tmp_path)
    store.fail_seq = 2
    errors: list[BaseException] = []
    await _open_three_finishing_in_reverse(node, store, errors)
    assert [str(e) for e in errors] == ["disk full"]
    assert mesh.pushed == [1, 3]
