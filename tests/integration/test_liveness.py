"""A peer that vanishes without a word is shown down by nodes that never send it anything."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import trio

import localgrape
from peer.cli.output import Output
from peer.config import NodeConfig, with_env_overrides
from peer.net.mesh import DOWN, HELLO_TIMEOUT, LIVENESS_TICK, SELF, UP, PeerLink
from peer.node import Node
from tests.support import wait_mesh

IDLE = 1.0  # the liveness bound of this test (the default is 10 s)


async def test_silent_peer_is_probed_and_shown_down_within_the_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())

        def config(i: int) -> NodeConfig:
            return NodeConfig(name=f"Client#{i}", data_dir=tmp_path / f"c{i}",
                              grape_urls=(grape.url,), lookup_interval=0.2,
                              announce_interval=0.5, anti_entropy_interval=3600,
                              liveness_interval=IDLE)

        watcher_out = io.StringIO()
        watcher = Node(config(1), Output(json_lines=False, stream=watcher_out))
        await nursery.start(watcher.run)
        assert watcher.mesh is not None
        mesh = watcher.mesh
        gone_scope, gone = trio.CancelScope(), trio.Event()
        vanishing = Node(config(2), Output(json_lines=True, stream=io.StringIO()))

        async def goodbye_lost() -> None:
            pass  # as if its host lost power: no Leave reaches anyone
        monkeypatch.setattr(vanishing, "_goodbye", goodbye_lost)

        async def run_vanishing(task_status: trio.TaskStatus[object]) -> None:
            with gone_scope:
                await vanishing.run(task_status=task_status)
            gone.set()
        await nursery.start(run_vanishing)

        def peer() -> PeerLink | None:
            live = [lk for lk in mesh.links.values() if lk.state not in (SELF,)]
            return live[0] if len(live) == 1 else None
        await wait_mesh(mesh, lambda: (lk := peer()) is not None and lk.state == UP,
                        "the peer up")
        link = peer()
        assert link is not None

        # Quiet but alive: probed now and then, answers, stays up.
        heard = link.heard_at
        await wait_mesh(mesh, lambda: link.heard_at > heard, "a liveness probe answered")
        assert link.state == UP

        gone_scope.cancel()
        await gone.wait()
        vanished_at = trio.current_time()
        # Nothing is sent to it (anti-entropy is off): only liveness can notice.
        with trio.fail_after(IDLE + LIVENESS_TICK + HELLO_TIMEOUT + 1 + 5):
            while link.state != DOWN:
                await mesh.wait_changed()
        assert trio.current_time() - vanished_at <= IDLE + LIVENESS_TICK + HELLO_TIMEOUT + 1 + 5
        assert "peer down: Client#2" in watcher_out.getvalue()
        nursery.cancel_scope.cancel()


def test_liveness_bound_comes_from_the_environment(tmp_path: Path) -> None:
    base = NodeConfig(name="Client#1", data_dir=tmp_path)
    assert base.liveness_interval == 10.0
    assert with_env_overrides(base, {"AUCTION_PEER_LIVENESS_INTERVAL": "2.5"}
                              ).liveness_interval == 2.5
    with pytest.raises(ValueError, match="AUCTION_PEER_LIVENESS_INTERVAL"):
        with_env_overrides(base, {"AUCTION_PEER_LIVENESS_INTERVAL": "0"})
