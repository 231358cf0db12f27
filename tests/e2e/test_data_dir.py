"""One node per data dir, and its control socket, through real `serve` processes.

These nodes need no network: they point at a Grape that is not there (a closed
loopback port), which a node survives by design, and are driven through the CLI.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from peer.storage import paths
from peer.storage.names import dir_name
from tests.e2e.harness import NO_GRAPE, PY, NodeProc, child_env, nodes, serve_once
from tests.support import ROOT


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProc]:
    with nodes(tmp_path, [NO_GRAPE], ["Client#1"]) as (started,):
        yield started


def test_second_serve_on_the_same_data_dir_exits_at_once(node: NodeProc) -> None:
    assert node.proc is not None
    second = serve_once(node.data_dir)
    assert second.returncode != 0
    assert f"data dir {node.data_dir} is in use (pid {node.proc.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    # The first node lost nothing: its socket is still there and it still answers.
    assert node.proc.poll() is None
    status = node.cli("status", "--json")
    assert status.code == 0, status
    assert status.json()["node_id"] == node.ready["node_id"]


def test_restart_after_sigkill_takes_the_lock_and_replaces_the_dead_socket(
        node: NodeProc) -> None:
    socket_path = Path(node.ready["control_socket"])
    node.kill()
    assert socket_path.is_socket(), "SIGKILL leaves the socket behind: the case under test"
    node.start()
    assert node.cli("status").code == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_stop_removes_the_control_socket(node: NodeProc, sig: signal.Signals) -> None:
    socket_path = Path(node.ready["control_socket"])
    assert socket_path.is_socket()
    assert node.stop(sig) == 0
    assert not socket_path.exists() and not socket_path.is_symlink()
    assert not any("Traceback" in line for line in node.stderr_lines), node.stderr_lines


def test_a_socket_that_answers_is_never_removed(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    socket_path = paths.control_socket_path(data_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as squatter:
        squatter.bind(str(socket_path))
        squatter.listen()
        refused = serve_once(data_dir)
        assert refused.returncode != 0
        assert f"another process answers on the control socket {socket_path}" in refused.stderr
        assert "Traceback" not in refused.stderr
        # Still the squatter's: a client still gets through to it.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(socket_path))


def test_something_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    socket_path = paths.control_socket_path(data_dir)
    socket_path.write_text("not a socket")
    refused = serve_once(data_dir)
    assert refused.returncode != 0
    assert "exists and is not a socket" in refused.stderr
    assert socket_path.read_text() == "not a socket"


def test_events_without_a_key_refuse_to_start_and_make_no_key(node: NodeProc) -> None:
    seller = node.ready["node_id"]
    assert node.cli("open", "Pic#1", "75").code == 0
    assert node.stop() == 0
    key_file, database = paths.key_path(node.data_dir), paths.database_path(node.data_dir)
    key = key_file.read_bytes()
    key_file.unlink()

    refused = serve_once(node.data_dir)
    assert refused.returncode != 0
    assert f"{database} holds 1 event(s) but the node key {key_file} is missing" in refused.stderr
    assert "Restore node.key from a backup" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not key_file.exists(), "a refused start must not make a key"

    # Nothing was lost: with its key back, the node is the seller it was.
    key_file.write_bytes(key)
    node.start()
    assert node.ready["node_id"] == seller
    closed = node.cli("close", "Client#1->Pic#1")
    assert closed.code == 0, closed


def test_a_failed_first_start_leaves_no_key_behind(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = serve_once(data_dir, "Client#1", "--port", str(port))
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    assert not paths.key_path(data_dir).exists()
    assert not paths.database_path(data_dir).exists()
    # The data dir is as good as new: the next start makes its key and runs.
    started = NodeProc("Client#1", data_dir, [NO_GRAPE]).start()
    try:
        assert paths.key_path(data_dir).exists()
    finally:
        started.stop()
    assert paths.key_path(data_dir).exists(), "a node that started keeps its key"


def test_names_that_used_to_share_a_dir_get_their_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUCTION_PEER_HOME", str(tmp_path))
    started: list[NodeProc] = []
    try:
        for name in ("Client#1", "Client_1", "Client 1"):
            started.append(NodeProc(name, tmp_path / dir_name(name), [NO_GRAPE],
                                    by_name=True).start())
        assert len({n.ready["node_id"] for n in started}) == 3
        for node in started:
            assert paths.key_path(node.data_dir).exists()
            status = node.cli("status", "--json")  # the CLI finds each by its name
            assert status.code == 0, status
            assert status.json()["name"] == node.name
            assert status.json()["node_id"] == node.ready["node_id"]
    finally:
        for node in started:
            node.stop()


def test_a_dir_an_older_version_shared_is_not_taken_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUCTION_PEER_HOME", str(tmp_path))
    (tmp_path / "Client_1").mkdir()  # as an older version left it: no owner recorded
    refused = subprocess.run(
        [PY, "-m", "peer", "serve", "--name", "Client#1", "--grape", NO_GRAPE],
        capture_output=True, text=True, timeout=20, env=child_env(), cwd=ROOT)
    assert refused.returncode == 2
    assert f"rename it to {tmp_path / 'Client%231'}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert list((tmp_path / "Client_1").iterdir()) == []
