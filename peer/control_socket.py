"""The control socket's file: when ``serve`` may replace one, and when it is taken.

A node killed with SIGKILL leaves its socket file behind, and the next start has
to remove it before it can bind. A socket that still answers belongs to a live
process, though, and removing it would cut that process off from its users: it
is left alone and the start fails instead.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

__all__ = ["ControlSocketError", "answers", "clear_stale"]

# Connecting to a listening Unix socket is immediate; this only bounds a process
# that accepted nothing for a long time (a full backlog).
_PROBE_TIMEOUT = 2.0


class ControlSocketError(Exception):
    """The control socket's path cannot be used; the message says why and what to do."""


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


def clear_stale(path: Path) -> None:
    """Make ``path`` free for ``serve`` to bind: remove a socket nobody answers on.

    Raises:
        ControlSocketError: Something that is not a socket is there, or a process
            still answers on it.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlSocketError(
            f"{path} exists and is not a socket; it was left as it is. Move it away so "
            f"the node can create its control socket there")
    if answers(path):
        raise ControlSocketError(
            f"another process answers on the control socket {path}; it was left as it is. "
            f"Stop that process first")
    path.unlink(missing_ok=True)
