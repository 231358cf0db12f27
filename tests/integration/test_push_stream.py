"""Fan-out travels over one long-lived PushStream per peer, and survives the peer restarting."""

from __future__ import annotations

import io
from pathlib import Path

import trio

import localgrape
from devsupport.ports import free_port
from peer.cli.output import Output
from peer.config import NodeConfig
from peer.gen.auction.v1 import NotificationKind, OpenRequest
from peer.net.mesh import UP, PeerLink
from peer.node import Node
from tests.support import wait_mesh


def _config(tmp_path: Path, name: str, grape_url: str, port: int = 0) -> NodeConfig:
    return NodeConfig(name=name, data_dir=tmp_path / name, grape_urls=(grape_url,), port=port,
                      lookup_interval=0.2, announce_interval=0.5, anti_entropy_interval=30.0)


def _node(config: NodeConfig) -> Node:
    return Node(config, Output(json_lines=True, stream=io.StringIO()))


async def _open_and_see(seller: Node, watcher: Node, items: list[str]) -> None:
    """Open ``items`` on ``seller`` and wait until ``watcher`` was told of each."""
    with watcher.control_subscribe() as notes:
        for item in items:
            reply = await seller.control_open(OpenRequest(item=item, start_amount="1",
                                                          currency="USDt"))
            assert reply.auction is not None, reply
        seen: list[str] = []
        with trio.fail_after(10):
            while len(seen) < len(items):
                note = await notes.receive()
                if note.kind == NotificationKind.OPENED and note.auction is not None:
                    seen.append(note.auction.item)
    assert seen == items


async def test_many_events_share_one_stream_per_peer(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        seller = _node(_config(tmp_path, "Seller", grape.url))
        buyer = _node(_config(tmp_path, "Buyer", grape.url))
        await nursery.start(seller.run)
        await nursery.start(buyer.run)
        assert seller.mesh is not None
        mesh = seller.mesh
        await wait_mesh(mesh, lambda: mesh.statistics().up == 1, "the buyer up")

        await _open_and_see(seller, buyer, [f"Lot#{n}" for n in range(30)])
        (link,) = mesh.up_links()
        assert link.push_streams == 1
        assert buyer.ledger.event_count == seller.ledger.event_count == 30
        nursery.cancel_scope.cancel()


async def test_a_restarted_peer_gets_a_new_stream_and_misses_nothing(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        seller = _node(_config(tmp_path, "Seller", grape.url))
        await nursery.start(seller.run)
        assert seller.mesh is not None
        mesh = seller.mesh
        buyer_config = _config(tmp_path, "Buyer", grape.url, port=free_port())
        buyer_address = f"127.0.0.1:{buyer_config.port}"

        async def run_buyer() -> Node:
            buyer = _node(buyer_config)
            await nursery.start(buyer.run)
            return buyer

        def buyer_link() -> PeerLink | None:
            return mesh.links.get(buyer_address)

        async with trio.open_nursery() as buyer_nursery:
            buyer = _node(buyer_config)
            await buyer_nursery.start(buyer.run)
            await wait_mesh(mesh, lambda: (lk := buyer_link()) is not None and lk.state == UP,
                        "the buyer up")
            await _open_and_see(seller, buyer, ["Before#1", "Before#2"])
            buyer_nursery.cancel_scope.cancel()  # a clean stop: the buyer says goodbye

        link = buyer_link()
        assert link is not None
        await wait_mesh(mesh, lambda: link.state != UP, "the stopped buyer marked down")
        for n in range(3):  # while it is away: reaches it through sync, not the stream
            reply = await seller.control_open(OpenRequest(item=f"Away#{n}", start_amount="1",
                                                          currency="USDt"))
            assert reply.auction is not None

        buyer = await run_buyer()
        assert buyer.ledger.event_count == 5  # synced on start
        await wait_mesh(mesh, lambda: link.state == UP, "the restarted buyer up again")
        await _open_and_see(seller, buyer, ["After#1", "After#2"])
        assert link.push_streams == 2
        assert buyer.ledger.event_count == seller.ledger.event_count == 7
        nursery.cancel_scope.cancel()
