"""A node started without --port keeps the port it picked across restarts."""

from __future__ import annotations

import io
import logging
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import trio

import localgrape
from peer.cli.output import Output
from peer.config import NodeConfig
from peer.net.mesh import SELF, UP
from peer.node import Node, ReadyInfo
from peer.storage import port_memory
from tests.support import free_port, wait_mesh


async def _start_stop(config: NodeConfig) -> ReadyInfo:
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        node = Node(replace(config, grape_urls=(grape.url,)),
                    Output(json_lines=True, stream=io.StringIO()))
        info: ReadyInfo = await nursery.start(node.run)
        nursery.cancel_scope.cancel()
    return info


async def test_picked_port_is_reused_and_a_taken_one_replaced(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = NodeConfig(name="Client#1", data_dir=tmp_path / "c1")
    first = await _start_stop(config)
    assert port_memory.recall(config.data_dir) == first.port
    second = await _start_stop(config)
    assert second.port == first.port
    assert "reusing port" in caplog.text

    # Someone else took the port meanwhile: a new one, a log line saying so.
    with socket.socket() as squatter:
        # As the node binds: a TLS connection's shutdown may leave the port's side of
        # it in TIME_WAIT, which only a listener without SO_REUSEADDR is stopped by.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("", first.port))  # every interface: taken for any --host
        squatter.listen()
        third = await _start_stop(config)
    assert third.port != first.port
    assert f"port {first.port} (remembered from the last start) is taken" in caplog.text
    assert port_memory.recall(config.data_dir) == third.port


async def test_explicit_port_wins_and_is_not_remembered(tmp_path: Path) -> None:
    config = NodeConfig(name="Client#1", data_dir=tmp_path / "c1")
    picked = await _start_stop(config)
    chosen = free_port()
    explicit = await _start_stop(NodeConfig(name="Client#1", data_dir=config.data_dir,
                                            port=chosen))
    assert explicit.port == chosen
    assert port_memory.recall(config.data_dir) == picked.port


async def test_restarted_node_is_up_again_at_once_despite_backoff(tmp_path: Path) -> None:
    """Back at the same address, its Hello makes the others re-probe it at once."""
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())

        def config(i: int) -> NodeConfig:
            return NodeConfig(name=f"Client#{i}", data_dir=tmp_path / f"c{i}",
                              grape_urls=(grape.url,), lookup_interval=0.2,
                              announce_interval=0.5, anti_entropy_interval=1.0)

        seller = Node(config(1), Output(json_lines=True, stream=io.StringIO()))
        await nursery.start(seller.run)
        assert seller.mesh is not None
        mesh = seller.mesh
        other_scope, other_stopped = trio.CancelScope(), trio.Event()

        async def run_other(task_status: trio.TaskStatus[ReadyInfo]) -> None:
            with other_scope:
                await Node(config(2), Output(json_lines=True, stream=io.StringIO())
                           ).run(task_status=task_status)
            other_stopped.set()
        first: ReadyInfo = await nursery.start(run_other)
        await wait_mesh(mesh, lambda: mesh.statistics().up == 1, "the peer up")
        other_scope.cancel()
        await other_stopped.wait()
        await wait_mesh(mesh, lambda: mesh.statistics().up == 0, "the peer down (left)")
        (link,) = [lk for lk in mesh.links.values() if lk.state != SELF]
        link.retry_at = trio.current_time() + 1000  # as after many failed probes

        async def run_again(task_status: trio.TaskStatus[ReadyInfo]) -> None:
            await Node(config(2), Output(json_lines=True, stream=io.StringIO())
                       ).run(task_status=task_status)
        again: ReadyInfo = await nursery.start(run_again)
        assert again.port == first.port
        await wait_mesh(mesh, lambda: link.state == UP, "the restarted peer up again")
        # Same address, no second record.
        assert [a for a, lk in mesh.links.items() if lk.state != SELF] == [link.address]
        nursery.cancel_scope.cancel()
