"""Fan-out around a stalled peer, and anti-entropy healing the push it missed.

The stalled peer is a real `serve` process stopped with SIGSTOP: its kernel still
accepts the bytes sent to it, but it answers nothing, like a peer on a host that
froze. The seller and a second buyer run in this process, so the test can look
at the seller's link to the stalled peer.
"""

from __future__ import annotations

import io
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import localgrape
from peer.cli.output import Output
from peer.config import NodeConfig
from peer.gen.auction.v1 import Notification, NotificationKind, OpenRequest
from peer.net import mesh as mesh_module
from peer.net.mesh import UP, Mesh, PeerLink
from peer.node import Node
from tests.e2e.harness import NodeProc
from tests.support import wait_mesh, wait_until


def _node(tmp_path: Path, name: str, grape_url: str) -> Node:
    # No anti-entropy of their own during the test: what heals the stalled peer is its
    # own anti-entropy (1 s in the harness), nothing these two do.
    config = NodeConfig(name=name, data_dir=tmp_path / name, grape_urls=(grape_url,),
                        host="127.0.0.1", lookup_interval=0.2, announce_interval=0.5,
                        anti_entropy_interval=600.0)
    return Node(config, Output(json_lines=True, stream=io.StringIO()))


@asynccontextmanager
async def _stopped(proc_node: NodeProc) -> AsyncIterator[None]:
    assert proc_node.proc is not None
    pid = proc_node.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until true; fail after 10 s naming ``what``.

    For state that changes on the asyncio side of the bridge (a peer's outbox),
    which has no trio event to wait on.
    """
    with trio.move_on_after(10):
        while not condition():  # noqa: ASYNC110 (no event to wait on, see above)
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def _open(seller: Node, item: str) -> None:
    reply = await seller.control_open(OpenRequest(item=item, start_amount="1",
                                                  currency="USDt"))
    assert reply.auction is not None, reply


async def _seen(notes: trio.MemoryReceiveChannel[Notification], items: list[str]) -> None:
    """Wait until ``notes`` told of the auctions ``items`` opened, in that order."""
    seen: list[str] = []
    with trio.fail_after(10):
        while seen != items:
            note = await notes.receive()
            if note.kind == NotificationKind.OPENED and note.auction is not None:
                seen.append(note.auction.item)
                assert seen == items[:len(seen)]


def _link_to(mesh: Mesh, node_id: bytes) -> PeerLink:
    (link,) = [lk for lk in mesh.links.values() if lk.node_id == node_id]
    return link


async def test_a_stalled_peer_holds_up_no_one_and_anti_entropy_heals_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One batch in flight plus one queued per peer, and no deadline on a push: the
    # stalled peer keeps its stream, its outbox fills, and the next batch is dropped.
    monkeypatch.setattr(mesh_module, "OUTBOX_BATCHES", 1)
    monkeypatch.setattr(mesh_module, "PUSH_TIMEOUT", 600.0)
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        seller = _node(tmp_path, "Seller", grape.url)
        fast = _node(tmp_path, "Fast", grape.url)
        await nursery.start(seller.run)
        await nursery.start(fast.run)
        stalled = NodeProc("Stalled", tmp_path / "Stalled", [grape.url])
        await trio.to_thread.run_sync(stalled.start)
        try:
            assert seller.mesh is not None
            mesh = seller.mesh
            await wait_mesh(mesh, lambda: mesh.statistics().up == 2, "both buyers up")
            link = _link_to(mesh, bytes.fromhex(stalled.ready["node_id"]))
            assert link.outbox_send is not None
            outbox = link.outbox_send

            with fast.control_subscribe() as notes:
                async with _stopped(stalled):
                    # A goes out to both; the stalled peer never answers it.
                    await _open(seller, "A")
                    await _seen(notes, ["A"])
                    await _until(lambda: not outbox._batches, "A taken by the sender")
                    # B waits in the stalled peer's outbox, C finds it full.
                    await _open(seller, "B")
                    await _open(seller, "C")
                    # The other buyer heard everything while the stalled peer held its
                    # push: a slow peer holds up no one, and the seller never waited.
                    await _seen(notes, ["B", "C"])
                    assert link.state == UP and link.lagging
                    assert fast.ledger.event_count == 3

            # Woken up, it gets A and B pushed; C was dropped and no later event
            # reveals the gap, so only its anti-entropy can bring it.
            await trio.to_thread.run_sync(
                lambda: stalled.wait_event("opened", "Seller->C", timeout=30))
            # The log line comes after the pull that printed C (and on stderr, read by
            # another thread than stdout's).
            await trio.to_thread.run_sync(lambda: wait_until(
                lambda: any("anti-entropy:" in line and "new event" in line
                            for line in stalled.stderr_lines),
                what="the stalled node's anti-entropy log line"))
            status = await trio.to_thread.run_sync(lambda: stalled.cli("status", "--json"))
            assert status.code == 0 and status.json()["events"] == 3
        finally:
            await trio.to_thread.run_sync(stalled.stop)
        nursery.cancel_scope.cancel()
