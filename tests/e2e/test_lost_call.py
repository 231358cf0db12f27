"""A node lost in the middle of a CLI call: exit 3, outcome unknown, never a traceback.

The node is stopped (SIGSTOP) so that the CLI's call is certainly in flight, and
killed (SIGKILL) once the CLI has connected: the request may or may not have been
read, which is exactly what the CLI cannot know.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import NO_GRAPE, PY, NodeProc, child_env, nodes
from tests.support import ROOT, wait_until

PROC_NET_UNIX = Path("/proc/net/unix")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProc]:
    if not PROC_NET_UNIX.exists():
        pytest.skip("needs Linux's /proc/net/unix to see the CLI connect")
    with nodes(tmp_path, [NO_GRAPE], ["Client#1"]) as (started,):
        yield started


def _connections(socket_path: Path) -> int:
    """Sockets bound to or connected at ``socket_path`` (the listener is one)."""
    suffix = " " + str(socket_path)
    return sum(line.endswith(suffix) for line in PROC_NET_UNIX.read_text().splitlines())


def _lose_node_during(node: NodeProc, *cli_args: str) -> subprocess.CompletedProcess[str]:
    assert node.proc is not None
    socket_path = Path(node.ready["control_socket"])
    listening = _connections(socket_path)
    node.proc.send_signal(signal.SIGSTOP)
    cli = subprocess.Popen([PY, "-m", "peer", *cli_args, "--data-dir", str(node.data_dir)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=child_env(), cwd=ROOT)
    try:
        # The kernel queues the CLI's connect although the node is stopped.
        wait_until(lambda: cli.poll() is not None or _connections(socket_path) > listening,
                   timeout=20, what="the CLI connected")
        assert cli.poll() is None, cli.communicate()
        node.kill()  # SIGKILL ends a stopped process too
        out, err = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    return subprocess.CompletedProcess(cli.args, cli.returncode, out, err)


def test_bid_lost_mid_call_says_the_outcome_is_unknown(node: NodeProc) -> None:
    lost = _lose_node_during(node, "bid", "Client#2->Pic#1", "80")
    assert lost.returncode == 3, lost
    assert "Traceback" not in lost.stderr
    assert "the outcome is unknown" in lost.stderr
    assert (f"check with `python -m peer show 'Client#2->Pic#1' --data-dir {node.data_dir}`"
            in lost.stderr)
    assert lost.stdout == ""


def test_bid_lost_mid_call_with_json_prints_one_object(node: NodeProc) -> None:
    lost = _lose_node_during(node, "bid", "Client#2->Pic#1", "80", "--json")
    assert lost.returncode == 3, lost
    assert "Traceback" not in lost.stderr
    report = json.loads(lost.stdout)  # one object, nothing else
    assert report["error"] == "OUTCOME_UNKNOWN"
    assert report["command"] == "bid"
    assert report["check"].startswith("python -m peer show 'Client#2->Pic#1'")


def test_a_read_lost_mid_call_says_nothing_changed(node: NodeProc) -> None:
    lost = _lose_node_during(node, "status", "--json")
    assert lost.returncode == 3, lost
    assert "Traceback" not in lost.stderr
    assert json.loads(lost.stdout)["error"] == "NODE_LOST"
    assert "nothing was changed" in lost.stderr
