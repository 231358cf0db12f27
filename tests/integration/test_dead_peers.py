"""A dead peer still listed in Grape costs one failed attempt, then is skipped and re-probed."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
import trio

import localgrape
from grape_client import GrapeClient
from peer.cli.output import Output
from peer.config import NodeConfig
from peer.gen.auction.v1 import NotificationKind, OpenRequest
from peer.net.backoff import Backoff
from peer.net.mesh import DOWN, UP
from peer.node import Node
from tests.support import wait_mesh


def _dead_port() -> int:
    # Bound then closed: connections to it are refused, as with a killed node.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_dead_address_is_marked_down_once_skipped_and_reprobed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # While `hold` is set, a failed peer's first re-probe is an hour away, so "one
    # failed attempt, no more" is checked without racing the real 0.5 s backoff.
    hold = True
    real_next_delay = Backoff.next_delay

    def next_delay(self: Backoff) -> float:
        delay = real_next_delay(self)
        return 3600.0 if hold else delay

    monkeypatch.setattr(Backoff, "next_delay", next_delay)
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        dead = f"127.0.0.1:{_dead_port()}"
        async with GrapeClient(grape.url) as client:
            await client.announce("auction", int(dead.rsplit(":", 1)[1]))

        nodes = []
        for i in (1, 2):
            config = NodeConfig(name=f"Client#{i}", data_dir=tmp_path / f"c{i}",
                                grape_urls=(grape.url,), lookup_interval=0.2,
                                announce_interval=0.5, anti_entropy_interval=1.0)
            node = Node(config, Output(json_lines=True, stream=io.StringIO()))
            await nursery.start(node.run)
            nodes.append(node)
        seller, other = nodes
        assert seller.mesh is not None and other.mesh is not None
        mesh = seller.mesh
        await wait_mesh(mesh, lambda: mesh.statistics().up == 1 and dead in mesh.links
                    and mesh.links[dead].state == DOWN,
                    "the live peer up and the dead address marked down")
        link = mesh.links[dead]
        assert link.backoff.failures == 1  # one failed attempt, no more
        assert link.outbox_send is None  # never given an outbox: fan-out skips it

        # Fan-out reaches the live peer while the dead one stays down and unqueued.
        with other.control_subscribe() as notes:
            for n in range(5):
                reply = await seller.control_open(OpenRequest(
                    item=f"Item#{n}", start_amount="1", currency="USDt"))
                assert reply.auction is not None
            opened: list[str] = []
            with trio.fail_after(10):
                while len(opened) < 5:
                    note = await notes.receive()
                    if note.kind == NotificationKind.OPENED and note.auction is not None:
                        opened.append(note.auction.item)
        assert opened == [f"Item#{n}" for n in range(5)]
        assert link.state == DOWN and link.outbox_send is None
        assert [lk.state for lk in mesh.links.values() if lk is not link] == [UP]

        # With the real backoff, a dead address found later is re-probed in the
        # background, again and again, while the first one waits out its delay.
        hold = False
        later = f"127.0.0.1:{_dead_port()}"
        async with GrapeClient(grape.url) as client:
            await client.announce("auction", int(later.rsplit(":", 1)[1]))
        await wait_mesh(mesh, lambda: later in mesh.links
                        and mesh.links[later].backoff.failures >= 3, "background re-probes")
        assert mesh.links[later].state == DOWN and mesh.links[later].outbox_send is None
        assert link.backoff.failures == 1 and link.state == DOWN
        nursery.cancel_scope.cancel()
