"""One node per data dir: an exclusive lock held for as long as the node runs.

Two processes on one data dir would append to one log with one key (a fork made
by the owner) and fight over the control socket. ``serve`` therefore takes an
``flock`` on ``<data dir>/node.lock`` before it touches the key or the database.
The kernel drops the lock with the last descriptor, so it dies with the process
however it ends (SIGKILL included) and a restart after a crash just takes it.

The file holds the holder's pid, only to name it in the message of the process
that finds the dir in use; the lock, not the file, is what counts. The file is
never removed: removing it would let a third process lock a new file while the
second still waits on the old one.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from peer.storage import paths

__all__ = ["DataDirInUse", "DataDirLock"]

_MAX_PID_TEXT = 32


class DataDirInUse(Exception):
    """Another process holds the data dir's lock."""


class DataDirLock:
    """The exclusive lock of one data dir; :meth:`acquire` it, :meth:`release` it."""

    def __init__(self, data_dir: Path, fd: int) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Lock ``data_dir`` (creating it, 0700) without waiting.

        Raises:
            DataDirInUse: Another process holds it; the message names its pid.
            OSError: The lock file cannot be created or locked.
        """
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = paths.lock_path(data_dir)
        writable = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # A read-only data dir (a storage fault) still serves what it holds; flock
            # needs no write access, only the pid hint is lost.
            if exc.errno not in (errno.EROFS, errno.EACCES) or not path.exists():
                raise
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            writable = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder is not None else "by a process that is starting"
            raise DataDirInUse(
                f"data dir {data_dir} is in use ({who}): one node per data dir. Stop that "
                f"node first, or give this one its own --name or --data-dir") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            if writable:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, only the hint is stale
        except BaseException:
            os.close(fd)  # also drops the lock
            raise
        return cls(data_dir, fd)

    def release(self) -> None:
        """Drop the lock (idempotent). The pid stays in the file; it is only a hint."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, _MAX_PID_TEXT, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
