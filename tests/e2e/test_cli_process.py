"""The CLI as a user meets it, through real processes: start-up failures, exit codes,
--json on every exit path, `list`'s short ids, one line per peer change, progress,
the demo on a shared grape and names that collide."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from peer.storage import key_file
from tests.e2e.harness import PY, NodeProc, child_env, cli
from tests.support import ROOT, running_grapes, wait_until

_TRACEBACK_MARKERS = ("Traceback", "ExceptionGroup", "sub-exception")


@pytest.fixture
def grape() -> Iterator[str]:
    """One localgrape of our own (its own DHT: nobody else's nodes are announced)."""
    with running_grapes([sys.executable, "-m", "localgrape"], count=1) as grapes:
        yield grapes[0].url


def _serve(*args: str, env: dict[str, str] | None = None,
           timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "peer", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or child_env(), cwd=ROOT)


def _one_line_failure(result: subprocess.CompletedProcess[str], cause: str) -> None:
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line
              or line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert cause in errors[0], result.stderr
    assert not any(m in result.stderr for m in _TRACEBACK_MARKERS), result.stderr


def _json_error(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    (line,) = result.stdout.splitlines()
    record: dict[str, object] = json.loads(line)
    assert record["event"] == "error"
    return record


# ====================================================================== serve start-up


def test_port_in_use_is_exit_5_in_one_line_and_leaves_no_new_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve("--name", "A", "--data-dir", str(data_dir), "--port", str(port),
                        "--grape", "http://127.0.0.1:9", "--json")
    assert result.returncode == 5
    _one_line_failure(result, f":{port}: the port is already in use")
    assert _json_error(result)["error"] == "CANNOT_LISTEN"
    # The key and the database it made are gone (the lock file stays: see node.run).
    assert not list(data_dir.glob("node.key*")) and not list(data_dir.glob("events.*"))


def test_failed_start_keeps_the_key_and_events_it_found(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    identity = key_file.load_or_create(data_dir / "node.key", "A")
    before = (data_dir / "node.key").read_bytes()
    result = _serve("--name", "A", "--data-dir", str(data_dir), "--host", "999.1.1.1",
                    "--grape", "http://127.0.0.1:9")
    assert result.returncode == 5
    _one_line_failure(result, "--host '999.1.1.1' is not an address of this machine")
    assert (data_dir / "node.key").read_bytes() == before
    assert key_file.load_or_create(data_dir / "node.key", "A").node_id == identity.node_id


def test_damaged_key_is_exit_4_and_is_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    data_dir.mkdir(mode=0o700)
    (data_dir / "node.key").write_bytes(b"not a key")
    (data_dir / "node.key").chmod(0o600)
    result = _serve("--name", "A", "--data-dir", str(data_dir), "--grape",
                    "http://127.0.0.1:9", "--json")
    assert result.returncode == 4
    _one_line_failure(result, "node.key")
    assert _json_error(result)["error"] == "DATA_DIR_UNUSABLE"
    assert (data_dir / "node.key").read_bytes() == b"not a key"


def test_damaged_store_is_exit_4_names_the_file_and_is_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    data_dir.mkdir(mode=0o700)
    key_file.load_or_create(data_dir / "node.key", "A")
    database = data_dir / "events.sqlite3"
    database.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)  # a torn header page
    damaged = database.read_bytes()
    result = _serve("--name", "A", "--data-dir", str(data_dir), "--grape",
                    "http://127.0.0.1:9", "--json")
    assert result.returncode == 4
    _one_line_failure(result, str(database))
    assert _json_error(result)["error"] == "DATA_DIR_UNUSABLE"
    assert database.read_bytes() == damaged
    assert sorted(p.name for p in data_dir.iterdir() if p.name.startswith("events")) == [
        "events.sqlite3"]


@pytest.mark.parametrize(("flag", "present", "absent"), [
    ("-q", " ERROR ", " INFO "), ("", " INFO ", " DEBUG "), ("-v", " DEBUG ", "\0")])
def test_log_levels(tmp_path: Path, flag: str, present: str, absent: str) -> None:
    with socket.socket() as taken:  # a start that fails at once still logs on the way
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = _serve("--name", "A", "--data-dir", str(tmp_path / "node"), "--port",
                        str(taken.getsockname()[1]), "--grape", "http://127.0.0.1:9",
                        *([flag] if flag else []))
    assert result.returncode == 5
    assert present in result.stderr and absent not in result.stderr, result.stderr


@pytest.mark.parametrize(("args", "env", "cause"), [
    (["--grape", "notaurl"], {}, "bad --grape: grape URL must look like http://host:port"),
    ([], {"AUCTION_PEER_LOOKUP_INTERVAL": "soon"}, "AUCTION_PEER_LOOKUP_INTERVAL must be"),
    (["--port", "70000"], {}, "--port must be 0..65535"),
])
def test_bad_usage_of_serve_is_exit_2_in_one_line(
        tmp_path: Path, args: list[str], env: dict[str, str], cause: str) -> None:
    result = _serve("--name", "A", "--data-dir", str(tmp_path / "node"), *args, "--json",
                    env=child_env() | env)
    assert result.returncode == 2
    _one_line_failure(result, cause)
    assert _json_error(result)["error"] == "BAD_USAGE"
    assert not (tmp_path / "node" / "node.key").exists()


# ====================================================================== a live network


def _start_text_node(name: str, data_dir: Path, grape: str, out: Path, err: Path,
                     *extra: str) -> subprocess.Popen[bytes]:
    env = child_env() | {"AUCTION_PEER_LOOKUP_INTERVAL": "0.3",
                         "AUCTION_PEER_ANNOUNCE_INTERVAL": "1.0"}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        return subprocess.Popen([PY, "-m", "peer", "serve", "--name", name, "--data-dir",
                                 str(data_dir), "--grape", grape, *extra],
                                stdout=stdout, stderr=stderr, env=env, cwd=ROOT)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def test_cli_against_a_live_node(tmp_path: Path, grape: str) -> None:
    seller = NodeProc("Client#1", tmp_path / "c1", [grape]).start()
    out, err = tmp_path / "c3.out", tmp_path / "c3.err"
    watcher = _start_text_node("Client#3", tmp_path / "c3", grape, out, err)
    try:
        wait_until(lambda: "peer up: Client#1" in out.read_text(), timeout=30,
                   what="the text-mode node to see Client#1")
        seller.wait_for(lambda r: r.get("event") == "peer_up", what="peer_up")
        assert seller.cli("open", "Pic#1", "75").code == 0
        assert seller.cli("open", "Pic#2", "60").code == 0
        wait_until(lambda: "Client#1 opened Pic#2" in out.read_text(), timeout=15,
                   what="the opens to reach Client#3")
        c3 = ["--data-dir", str(tmp_path / "c3")]

        # `list` ends each line with a short id that `show` takes as it is.
        listed = cli("list", *c3)
        assert listed.code == 0, listed
        short = {line.split()[1]: line.split()[0] for line in listed.stdout.splitlines()}
        assert set(short) == {"Client#1->Pic#1", "Client#1->Pic#2"}
        seller_id = seller.ready["node_id"]
        assert short["Client#1->Pic#1"] == f"{seller_id[:8]}:1"
        shown = cli("show", short["Client#1->Pic#2"], *c3, "--json")
        assert shown.code == 0 and shown.json()["item"] == "Pic#2"
        as_json = cli("list", *c3, "--json").json()
        assert {a["short_id"] for a in as_json} == set(short.values())

        # What the shell leaves of an unquoted Client#1->Pic#1: a clear usage error.
        cut = subprocess.run(f"{PY} -m peer show Client#1->Pic#1 --data-dir {tmp_path}/c3",
                             shell=True, capture_output=True, text=True, cwd=tmp_path,
                             env=child_env(), timeout=30)
        assert cut.returncode == 2
        assert "redirect" in cut.stderr and "'Client#1->Pic#1'" in cut.stderr
        assert (tmp_path / "Pic#1").exists()  # what the shell did, as the message says

        # Every refusal by the node is 1, with one JSON object under --json.
        for args, code in ((["show", seller_id[:8]], "AMBIGUOUS_AUCTION"),
                           (["open", " ", "10"], "BAD_ITEM"),
                           (["open", "Pic#3", "10", "--currency", "U$D"], "BAD_CURRENCY"),
                           (["bid", "Client#1->Pic#1", "70"], "BID_TOO_LOW")):
            refused = cli(*args, *c3, "--json")
            assert refused.code == 1, refused
            assert refused.json()["error"] == code
            assert f"refused: {code}" in refused.stderr
    finally:
        assert _stop(watcher) == 0
        seller_code = seller.stop()
    assert seller_code == 0
    assert seller.lines[-1] == {"event": "stopped", "reason": "SIGTERM"}
    # One line per peer change in a terminal: the notification, not a log line too.
    both = out.read_text() + err.read_text()
    assert len(re.findall(r"peer up\b", both)) == 1, both


def test_twins_are_told_apart_by_short_id(tmp_path: Path, grape: str) -> None:
    a = NodeProc("Twin", tmp_path / "a", [grape]).start()
    b = NodeProc("Twin", tmp_path / "b", [grape]).start()
    try:
        a.wait_for(lambda r: r.get("event") == "peer_up", what="peer_up")
        b.wait_for(lambda r: r.get("event") == "peer_up", what="peer_up")
        short_a, short_b = a.ready["node_id"][:8], b.ready["node_id"][:8]
        assert a.cli("open", "Pic#1", "10").code == 0
        b.wait_text("Twin opened Pic#1")
        assert b.cli("open", "Pic#2", "10").code == 0
        a.wait_text(f"Twin ({short_b}) opened Pic#2")
        assert b.cli("bid", f"{short_a}:1", "11").code == 0
        for node in (a, b):
            node.wait_text(f"Twin ({short_b}) bid 11 USDt on Twin ({short_a})->Pic#1")
    finally:
        a.stop()
        b.stop()


# ====================================================================== progress


@pytest.fixture
def big_source(tmp_path: Path, grape: str) -> Iterator[NodeProc]:
    """A node holding 3,000 events, for others to sync from."""
    from bench import bench_core
    from bench.bench_sync import fill_data_dir

    fill_data_dir(tmp_path / "source", bench_core._workload(3000))
    # The node relays these events; a data dir with events needs a key to start.
    key_file.load_or_create(tmp_path / "source" / "node.key", "Source")
    source = NodeProc("Source", tmp_path / "source", [grape]).start(timeout=60)
    try:
        assert source.ready["events"] == 3000
        yield source
    finally:
        source.stop()


def test_sync_progress_as_json_and_on_a_terminal_only(
        tmp_path: Path, grape: str, big_source: NodeProc,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUCTION_PEER_PROGRESS_INTERVAL", "0.02")
    joiner = NodeProc("Joiner", tmp_path / "joiner", [grape]).start(timeout=60)
    joiner.stop()
    assert joiner.ready["synced"] == 3000
    before_ready = joiner.lines[:joiner.lines.index(joiner.ready)]
    progress = [r for r in before_ready if r["event"] == "progress"]
    assert progress, joiner.lines
    assert all(r["expected"] == 3000 and r["left"] == 3000 - r["synced"] for r in progress)
    assert [r["synced"] for r in progress] == sorted(r["synced"] for r in progress)

    # Text mode: a line rewritten in place on a terminal's stderr, nothing in a pipe.
    env = child_env() | {"AUCTION_PEER_PROGRESS_INTERVAL": "0.02"}
    outputs = {mode: _joiner_stderr(tmp_path / mode, grape, env, tty=mode == "tty")
               for mode in ("tty", "pipe")}
    assert re.search(rb"\rsyncing: [\d,]+ of 3,000 events", outputs["tty"]), outputs["tty"]
    assert b"syncing" not in outputs["pipe"], outputs["pipe"]


def _joiner_stderr(data_dir: Path, grape: str, env: dict[str, str], *, tty: bool) -> bytes:
    """Start a text-mode node that syncs from the source; its stderr until it was ready."""
    main_fd, tty_fd = pty.openpty()
    drained: list[bytes] = []
    # Drained meanwhile: a full pty would block the node's writes to stderr.
    reader = threading.Thread(target=lambda: drained.append(_read_all(main_fd)), daemon=True)
    try:
        with subprocess.Popen([PY, "-m", "peer", "serve", "--name", data_dir.name,
                               "--data-dir", str(data_dir), "--grape", grape],
                              stdout=subprocess.PIPE,
                              stderr=tty_fd if tty else subprocess.PIPE,
                              env=env, cwd=ROOT) as proc:
            os.close(tty_fd)
            reader.start()
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    if b" ready on port " in line:
                        assert b"3000 synced from peers" in line, line
                        break
            finally:
                _stop(proc)
            piped = b"" if tty else proc.communicate()[1]
        reader.join(timeout=10)
    finally:
        os.close(main_fd)
    return drained[0] if tty else piped


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side of the pty is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


# ====================================================================== demo


def test_demo_on_a_shared_grape_runs_on_its_own_service(tmp_path: Path, grape: str) -> None:
    other = NodeProc("Bystander", tmp_path / "bystander", [grape]).start()
    try:
        demo = subprocess.run([PY, "-m", "peer", "demo", "--grape", grape], capture_output=True,
                              text=True, timeout=90, env=child_env(), cwd=tmp_path)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert re.search(r"service name: auction-demo-[0-9a-f]{8}\n", demo.stdout)
    finally:
        other.stop()
    # The bystander, on the default service, never met the demo's nodes.
    assert not [r for r in other.lines if r.get("event") == "peer_up"]
