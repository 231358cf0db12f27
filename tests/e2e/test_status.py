"""`status` through real processes: peers by name, state and since when; dead Grape
addresses counted, not listed; no errno text; and it does not grow with restarts."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import nodes
from tests.support import running_grapes


@pytest.fixture
def one_grape() -> Iterator[str]:
    with running_grapes([sys.executable, "-m", "localgrape"], count=1) as grapes:
        yield grapes[0].url


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_status_shows_peers_by_name_state_and_since(tmp_path: Path, one_grape: str) -> None:
    dead = _closed_port()
    httpx.post(f"{one_grape}/announce", json={"data": ["auction", dead]}, timeout=10)
    with nodes(tmp_path, [one_grape], ["Client#1", "Client#2"]) as (first, second):
        first.wait_peers(1)
        text = first.cli("status")
        assert text.code == 0, text
        lines = text.stdout.splitlines()
        (peer_line,) = [line for line in lines if line.strip().startswith("peer ")]
        assert "Client#2" in peer_line and " up " in peer_line and " since " in peer_line
        assert "at 127.0.0.1:" in peer_line
        assert any("address(es) from Grape never answered" in line for line in lines)
        assert "Connect call failed" not in text.stdout and f":{dead}" not in text.stdout

        # The second node restarts (on the port it remembers): still one line for it.
        second.stop()
        second.start()
        first.wait_peers(1)
        after = first.cli("status", "--json").json()
        assert [(p["name"], p["state"]) for p in after["peers"]] == [("Client#2", "up")]
        assert after["peers"][0]["since"].endswith("Z")

        # Stopped for good: shown down, at its last address, with a short reason.
        second.stop()
        deadline = time.monotonic() + 15
        while (peers := first.cli("status", "--json").json()["peers"])[0]["up"]:
            assert time.monotonic() < deadline, peers
        (peer,) = peers
        assert (peer["name"], peer["state"], peer["up"]) == ("Client#2", "down", False)
        assert "Connect call failed" not in peer["detail"]
