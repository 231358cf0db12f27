"""Where a node keeps its files, shared by `serve` and the CLI commands."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

# sun_path is 108 bytes on Linux including the NUL; leave room for a margin.
_MAX_SOCKET_PATH = 100


def home() -> Path:
    """Root of the default data dirs: $AUCTION_PEER_HOME, else ~/.auction-peer."""
    env = os.environ.get("AUCTION_PEER_HOME")
    return Path(env) if env else Path.home() / ".auction-peer"


def control_socket_path(data_dir: Path) -> Path:
    """The control socket of the node that owns ``data_dir``.

    It lives in the data dir unless that path would exceed the Unix socket path
    limit (deep temporary dirs); then it lives in this user's private runtime dir
    (:func:`runtime_dir`) under a name derived from the data dir's absolute path,
    so the CLI finds it too.
    """
    data_dir = data_dir.resolve()
    inside = data_dir / "control.sock"
    if len(os.fsencode(inside)) <= _MAX_SOCKET_PATH:
        return inside
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:24]
    return runtime_dir() / f"{digest}.sock"


def runtime_dir() -> Path:
    """Where control sockets too long for their data dir live: this user's only.

    ``$XDG_RUNTIME_DIR/auction-peer`` where that is set (the session's private dir),
    else ``auction-peer-<uid>`` in the temp dir. ``serve`` creates it 0700 and both
    ``serve`` and the CLI refuse it unless this user owns it and nobody else may
    enter it (``peer.net.control_socket``): the temp dir is shared, and another user
    could otherwise make the dir first and catch the socket.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "auction-peer"
    return Path(tempfile.gettempdir()) / f"auction-peer-{os.geteuid()}"


def database_path(data_dir: Path) -> Path:
    return data_dir / "events.sqlite3"


def key_path(data_dir: Path) -> Path:
    return data_dir / "node.key"


def owner_path(data_dir: Path) -> Path:
    """The name of the node that last ran on the data dir (see ``peer.storage.names``)."""
    return data_dir / "node.name"


def lock_path(data_dir: Path) -> Path:
    """The file ``serve`` locks so that one data dir has at most one node."""
    return data_dir / "node.lock"
