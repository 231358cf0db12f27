"""A grape answering thousands of new dead addresses per lookup cannot grow a node's
address set without limit, and `status` shows nodes, not every address."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import trio

import localgrape
from grape_client import GrapeClient
from peer.cli.output import Output
from peer.cli.render import status_lines
from peer.config import NodeConfig
from peer.node import Node
from tests.hostile_grape import HostileGrape
from tests.support import wait_mesh


async def test_endless_addresses_from_grape_stay_within_the_cap(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        hostile = await nursery.start(HostileGrape("addresses", per_lookup=5000).serve)
        config = NodeConfig(name="Client#1", data_dir=tmp_path / "c1",
                            grape_urls=(hostile.url,), lookup_interval=0.05,
                            announce_interval=0.5)
        node = Node(config, Output(json_lines=True, stream=io.StringIO()))
        await nursery.start(node.run)
        mesh = node.mesh
        assert mesh is not None
        limits = mesh.address_limits
        # Every lookup offers 5000 new addresses; the cap holds after many lookups.
        await wait_mesh(mesh, lambda: hostile.lookups >= 2 * limits.max_known
                        // limits.max_new_per_lookup, "enough lookups to fill the cap")
        assert len(mesh.links) <= limits.max_known
        with trio.fail_after(1):
            status = await node.control_status()
        assert status.peers == []
        assert 0 < status.unanswered_addresses <= limits.max_known
        nursery.cancel_scope.cancel()


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_status_shows_peers_by_name_state_and_since(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        async with GrapeClient(grape.url) as client:
            await client.announce("auction", _dead_port())
        nodes = []
        for i in (1, 2):
            config = NodeConfig(name=f"Client#{i}", data_dir=tmp_path / f"c{i}",
                                grape_urls=(grape.url,), lookup_interval=0.1,
                                announce_interval=0.2)
            node = Node(config, Output(json_lines=True, stream=io.StringIO()))
            await nursery.start(node.run)
            nodes.append(node)
        first = nodes[0]
        assert first.mesh is not None
        mesh = first.mesh
        await wait_mesh(mesh, lambda: mesh.statistics().up == 1
                        and mesh.statistics().down == 1, "one peer up, the dead address down")
        status = await first.control_status()
        assert [(p.name, p.state, p.up) for p in status.peers] == [("Client#2", "up", True)]
        assert status.peers[0].since_ms > 0
        assert status.unanswered_addresses == 1
        text = "\n".join(status_lines(status))
        assert "Client#2" in text and "up   since" in text
        assert "1 address(es) from Grape never answered" in text
        assert "Connect call failed" not in text

        # A peer that stops is shown down, at its last address, with a short reason.
        mesh.mark_down(mesh.up_links()[0], ConnectionRefusedError(111, "Connect call failed"))
        status = await first.control_status()
        (peer,) = status.peers
        assert (peer.name, peer.state, peer.up) == ("Client#2", "down", False)
        assert peer.detail.startswith("refused")
        assert "last at 127.0.0.1:" in "\n".join(status_lines(status))
        nursery.cancel_scope.cancel()
