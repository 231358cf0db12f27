"""The data dir lock: exclusive, names its holder, and gone with its descriptor."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from peer.storage import paths
from peer.storage.dir_lock import DataDirInUse, DataDirLock


def test_second_lock_on_one_dir_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with (DataDirLock.acquire(tmp_path / "d"),
          pytest.raises(DataDirInUse, match=rf"is in use \(pid {os.getpid()}\)")):
        DataDirLock.acquire(tmp_path / "d")
    # Released: the next one takes it, and other dirs never conflicted.
    with DataDirLock.acquire(tmp_path / "d"), DataDirLock.acquire(tmp_path / "e"):
        pass


def test_the_lock_file_holds_the_pid_and_the_dir_is_private(tmp_path: Path) -> None:
    lock = DataDirLock.acquire(tmp_path / "d")
    try:
        assert paths.lock_path(tmp_path / "d").read_text().strip() == str(os.getpid())
        assert (tmp_path / "d").stat().st_mode & 0o077 == 0
        assert paths.lock_path(tmp_path / "d").stat().st_mode & 0o077 == 0
    finally:
        lock.release()
        lock.release()  # idempotent


def test_a_holder_that_has_not_written_its_pid_yet_is_still_named(tmp_path: Path) -> None:
    with DataDirLock.acquire(tmp_path / "d"):
        paths.lock_path(tmp_path / "d").write_text("")
        with pytest.raises(DataDirInUse, match=r"in use \(by a process that is starting\)"):
            DataDirLock.acquire(tmp_path / "d")


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir that has run once, on a small tmpfs remounted read-only."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a read-only tmpfs")
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                   check=True, capture_output=True, timeout=30)
    try:
        DataDirLock.acquire(mount_point / "d").release()
        subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True,
                       capture_output=True, timeout=30)
        yield mount_point / "d"
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, capture_output=True,
                       timeout=30)


def test_a_read_only_data_dir_is_still_locked(read_only_dir: Path) -> None:
    with DataDirLock.acquire(read_only_dir), pytest.raises(DataDirInUse):
        DataDirLock.acquire(read_only_dir)
