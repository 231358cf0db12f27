"""The control socket's file: private to its user, and replaced only when dead.

Whoever can connect to a node's control socket can bid and close auctions in its
name, and whoever made the socket the CLI connects to sees and answers its calls.
So the socket is made 0600 in the data dir, or in a per-user dir (0700, checked
for its owner) when the data dir's path is too long; and the CLI talks only to a
socket that this user owns (:func:`check_before_talking`).

A node killed with SIGKILL leaves its socket file behind, and the next start has
to remove it before it can bind. A socket that still answers belongs to a live
process, though, and removing it would cut that process off from its users: it
is left alone and the start fails instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import socket
import stat
from pathlib import Path

from peer.storage import paths

__all__ = ["ControlSocketError", "NoControlSocket", "answers", "check_before_talking",
           "prepare_to_listen"]

# Connecting to a listening Unix socket is immediate; this only bounds a process
# that accepted nothing for a long time (a full backlog).
_PROBE_TIMEOUT = 2.0
# sun_path is 108 bytes on Linux, the terminating NUL included.
_MAX_SOCKET_PATH = 107


class ControlSocketError(Exception):
    """The control socket's path cannot be used; the message says why and what to do."""


class NoControlSocket(Exception):
    """Nothing is at the control socket's path: no node runs for that data dir."""


def answers(path: Path) -> bool:
    """Whether some process accepts connections on the Unix socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_PROBE_TIMEOUT)
    try:
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except TimeoutError:
        return True  # listening, only too busy to accept: alive
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise
    finally:
        probe.close()
    return True


def prepare_to_listen(path: Path) -> None:
    """Make ``path`` ready for ``serve`` to bind: a private dir, no stale socket.

    Creates the per-user runtime dir (0700) when the socket lives there, and removes
    a socket left behind by a crash, but only if it is ours and nobody answers on it.

    Raises:
        ControlSocketError: The runtime dir is not private to this user, something
            that is not our socket is at ``path``, or a process still answers on it.
    """
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise ControlSocketError(
            f"the control socket path {path} is too long for a Unix socket "
            f"({len(os.fsencode(path))} bytes, at most {_MAX_SOCKET_PATH}); use a shorter "
            f"XDG_RUNTIME_DIR or TMPDIR")
    if path.parent == paths.runtime_dir():
        with contextlib.suppress(FileExistsError):  # checked below, whoever made it
            path.parent.mkdir(mode=0o700)
        _check_private_dir(path.parent)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlSocketError(
            f"{path} exists and is not a socket; it was left as it is. Move it away so "
            f"the node can create its control socket there")
    _check_owner(path, info, "socket")
    if answers(path):
        raise ControlSocketError(
            f"another process answers on the control socket {path}; it was left as it is. "
            f"Stop that process first")
    path.unlink(missing_ok=True)


def check_before_talking(path: Path) -> None:
    """Refuse to talk to a control socket this user does not own (the CLI's check).

    Raises:
        NoControlSocket: Nothing is there (no node runs), or not a socket.
        ControlSocketError: The socket or its runtime dir belongs to another user or
            is open to other users: someone else may be listening in the node's place.
    """
    try:
        if path.parent == paths.runtime_dir():
            _check_private_dir(path.parent)
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NoControlSocket(f"no control socket at {path}") from None
    except OSError as exc:  # e.g. another user's data dir: no access
        raise ControlSocketError(
            f"cannot look at the control socket {path}: {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise NoControlSocket(f"{path} is not a socket")
    _check_owner(path, info, "socket")


def _check_private_dir(directory: Path) -> None:
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise ControlSocketError(
            f"{directory} is not a directory (a symlink or a file is there); refusing to "
            f"use it for control sockets. Remove it, or set XDG_RUNTIME_DIR to a private "
            f"directory")
    _check_owner(directory, info, "directory")
    if info.st_mode & 0o077:
        raise ControlSocketError(
            f"{directory} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"refusing to use it for control sockets. Make it private: chmod 700 "
            f"{directory}")


def _check_owner(path: Path, info: os.stat_result, what: str) -> None:
    me = os.geteuid()
    if info.st_uid != me:
        raise ControlSocketError(
            f"the {what} {path} belongs to {_user(info.st_uid)}, not to you "
            f"({_user(me)}): another user may have put it there to catch your node's "
            f"calls. Refusing to use it; remove it, or use another --data-dir")


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
