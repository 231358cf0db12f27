"""A node finds the address peers dial it at, and says so, or warns with the fix."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import trio

import localgrape
from peer.cli.output import Output
from peer.cli.render import status_json, status_lines
from peer.config import NodeConfig
from peer.node import Node


async def test_default_node_passes_and_shows_its_dial_address(tmp_path: Path) -> None:
    out = io.StringIO()
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        node = Node(NodeConfig(name="Client#1", data_dir=tmp_path / "c1",
                               grape_urls=(grape.url,)), Output(json_lines=True, stream=out))
        info = await nursery.start(node.run)
        status = await node.control_status()
        nursery.cancel_scope.cancel()
    dial = f"127.0.0.1:{info.port}"  # the address the loopback grape recorded
    ready = json.loads(out.getvalue().splitlines()[0])
    assert ready["event"] == "ready"
    assert (ready["self_check"], ready["dial_address"], ready["self_check_detail"]) == (
        "passed", dial, "")
    assert status.address == f"0.0.0.0:{info.port}"  # listens on every interface
    assert status_json(status)["dial_address"] == dial
    assert status_json(status)["self_check"] == "passed"
    assert f"  peers dial {dial} (self-check passed)" in status_lines(status)


async def test_unreachable_at_the_announced_address_warns_with_the_fix(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Listening on 127.0.0.2 while Grape lists 127.0.0.1: as --host 127.0.0.1 across hosts."""
    caplog.set_level(logging.INFO)
    out = io.StringIO()
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        node = Node(NodeConfig(name="Client#1", data_dir=tmp_path / "c1", host="127.0.0.2",
                               grape_urls=(grape.url,)), Output(json_lines=False, stream=out))
        info = await nursery.start(node.run)
        status = await node.control_status()
        nursery.cancel_scope.cancel()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and "self-check FAILED" in r.getMessage()]
    assert len(warnings) == 1
    assert "--host 0.0.0.0" in warnings[0].getMessage()
    ready = out.getvalue().splitlines()[0]
    assert "ready on port" in ready
    assert f"self-check FAILED: peers dial 127.0.0.1:{info.port}" in ready
    assert f"listens on 127.0.0.2:{info.port} only" in ready
    assert status.self_check == "failed" and status.dial_address == f"127.0.0.1:{info.port}"
    assert any(line.startswith("  self-check FAILED: ") for line in status_lines(status))
