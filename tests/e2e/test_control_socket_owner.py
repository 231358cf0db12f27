"""Control sockets stay private: another local user cannot catch a node's calls.

The squatter is a real second Unix user (added with useradd; these tests need root,
as in CI) who binds the path a node's control socket would take before the node
starts. Neither `serve` nor the CLI may then use it, and the CLI must never have
connected to it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from peer.storage import paths
from tests.e2e.harness import NO_GRAPE, NodeProc, cli, serve_once

SQUATTER = "auctionpeer-squat"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


@pytest.fixture(scope="session")
def squatter() -> Iterator[User]:
    if os.geteuid() != 0:
        pytest.skip("needs root to add a second Unix user (useradd)")
    useradd = shutil.which("useradd")
    if useradd is None:
        pytest.skip("useradd is not installed")
    # Kept afterwards (a system user with no home and no login): test sessions may
    # run side by side, and one deleting it would pull it from under another.
    try:
        pwd.getpwnam(SQUATTER)
    except KeyError:
        added = subprocess.run([useradd, "--system", "--no-create-home", "--shell",
                                "/usr/sbin/nologin", SQUATTER],
                               capture_output=True, text=True, timeout=30, check=False)
        if added.returncode not in (0, 9):  # 9: a parallel session added it meanwhile
            pytest.fail(f"useradd failed: {added.stderr}")
    entry = pwd.getpwnam(SQUATTER)
    yield User(SQUATTER, entry.pw_uid, entry.pw_gid)


class Squat:
    """A process of ``user`` listening on ``path`` (making ``directory`` first, 0777)."""

    def __init__(self, user: User, path: Path, directory: Path | None = None) -> None:
        ready_r, self._ready_w = os.pipe()
        self._done_r, done_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the squatter: plain system calls only, then _exit
            code = 1
            try:
                os.close(ready_r)
                os.close(done_w)
                os.setgroups([])
                os.setgid(user.gid)
                os.setuid(user.uid)
                os.umask(0)
                if directory is not None:
                    os.mkdir(directory, 0o777)
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(str(path))
                listener.listen(8)
                os.write(self._ready_w, b"r")
                os.read(self._done_r, 1)  # until the test is done
                listener.setblocking(False)
                try:
                    listener.accept()
                    os.write(self._ready_w, b"C")  # somebody connected
                except BlockingIOError:
                    os.write(self._ready_w, b"N")
                code = 0
            finally:
                os._exit(code)
        os.close(self._ready_w)
        os.close(self._done_r)
        self._ready_r, self._done_w = ready_r, done_w
        if os.read(self._ready_r, 1) != b"r":
            self.close()
            pytest.fail("the squatter could not bind its socket")

    def close(self) -> bool:
        """End the squatter; whether anybody connected to its socket."""
        os.close(self._done_w)
        verdict = os.read(self._ready_r, 1)
        os.close(self._ready_r)
        os.waitpid(self.pid, 0)
        return verdict == b"C"


@pytest.fixture
def shared_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp dir every user may write to, like /tmp, used as TMPDIR, with no
    XDG_RUNTIME_DIR: the case where control sockets fall back to the temp dir."""
    shared = Path(tempfile.mkdtemp(prefix="auction-peer-shared-"))
    shared.chmod(0o1777)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(shared))
    monkeypatch.setattr(tempfile, "tempdir", str(shared))  # this process's cached copy
    try:
        yield shared
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _long_data_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / ("d" * 100)  # too long for a socket path inside it
    assert paths.control_socket_path(data_dir).parent == paths.runtime_dir()
    return data_dir


def test_a_runtime_dir_made_by_another_user_is_refused(
        tmp_path: Path, shared_tmp: Path, squatter: User) -> None:
    data_dir = _long_data_dir(tmp_path)
    socket_path = paths.control_socket_path(data_dir)
    assert socket_path.parent == shared_tmp / f"auction-peer-{os.geteuid()}"
    squat = Squat(squatter, socket_path, directory=socket_path.parent)
    try:
        refused = serve_once(data_dir)
        assert refused.returncode != 0
        assert (f"the directory {socket_path.parent} belongs to {SQUATTER} "
                f"(uid {squatter.uid})") in refused.stderr
        assert "Traceback" not in refused.stderr

        talked = cli("status", "--data-dir", str(data_dir))
        assert talked.code == 3, talked
        assert f"belongs to {SQUATTER}" in talked.stderr and "Traceback" not in talked.stderr
        assert socket_path.is_socket(), "the squatter's socket is not ours to remove"
    finally:
        connected = squat.close()
    assert not connected, "the CLI talked to the squatter"


def test_a_socket_of_another_user_in_the_data_dir_is_refused(
        shared_tmp: Path, squatter: User) -> None:
    data_dir = shared_tmp / "data"  # a data dir others may write to
    data_dir.mkdir(mode=0o777)
    data_dir.chmod(0o777)
    socket_path = paths.control_socket_path(data_dir)
    assert socket_path.parent == data_dir
    squat = Squat(squatter, socket_path)
    try:
        talked = cli("bid", "Client#1->Pic#1", "80", "--data-dir", str(data_dir), "--json")
        assert talked.code == 3, talked
        assert f"the socket {socket_path} belongs to {SQUATTER}" in talked.stderr
        assert "Traceback" not in talked.stderr

        refused = serve_once(data_dir)
        assert refused.returncode != 0
        assert f"belongs to {SQUATTER}" in refused.stderr
        assert socket_path.is_socket()
    finally:
        connected = squat.close()
    assert not connected, "the CLI talked to the squatter"


@pytest.fixture
def xdg_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR short enough for socket paths below it."""
    runtime = Path(tempfile.mkdtemp(prefix="ap-run-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    try:
        yield runtime
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def test_long_data_dirs_put_their_socket_in_the_private_runtime_dir(
        tmp_path: Path, xdg_runtime: Path) -> None:
    runtime = xdg_runtime
    data_dir = _long_data_dir(tmp_path)
    node = NodeProc("Client#1", data_dir, [NO_GRAPE]).start()
    try:
        socket_path = Path(node.ready["control_socket"])
        assert socket_path.parent == runtime / "auction-peer"
        assert socket_path.parent.stat().st_mode & 0o777 == 0o700
        assert socket_path.stat().st_mode & 0o077 == 0
        assert node.cli("status").code == 0
    finally:
        assert node.stop() == 0
    assert not socket_path.exists()


def test_a_runtime_dir_open_to_others_is_refused(tmp_path: Path, xdg_runtime: Path) -> None:
    runtime = xdg_runtime
    (runtime / "auction-peer").mkdir()
    (runtime / "auction-peer").chmod(0o755)
    data_dir = _long_data_dir(tmp_path)
    refused = serve_once(data_dir)
    assert refused.returncode != 0
    assert f"{runtime / 'auction-peer'} is open to other users (mode 755)" in refused.stderr
    talked = cli("status", "--data-dir", str(data_dir))
    assert talked.code == 3 and "is open to other users" in talked.stderr, talked
