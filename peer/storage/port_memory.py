"""The public port a node picked for itself, remembered in its data dir.

A node started without ``--port`` (or with ``--port 0``) gets a free port from the
kernel. Remembering it keeps the node at one address across restarts: its Grape
record stays valid instead of piling up dead ones (CLI grapes keep records for
ever), and the port can be opened in a firewall once.

The file holds the port as decimal text. Anything else in it is reported and
ignored (a new port is picked and remembered): a damaged file never stops a node.
"""

from __future__ import annotations

import logging
from pathlib import Path

from peer.storage.durable_file import write_durably

__all__ = ["PORT_FILE", "recall", "remember"]

log = logging.getLogger(__name__)

PORT_FILE = "peer.port"
# A real file is a few bytes; reading a huge one would only waste memory.
_MAX_FILE_BYTES = 64


def _path(data_dir: Path) -> Path:
    return data_dir / PORT_FILE


def recall(data_dir: Path) -> int | None:
    """The remembered port, or None when there is none or the file is unusable."""
    path = _path(data_dir)
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the remembered port in %s (%s); picking a new one", path, exc)
        return None
    text = raw.decode("ascii", errors="replace").strip()
    if len(raw) <= _MAX_FILE_BYTES and text.isdigit() and 1 <= int(text) <= 65535:
        return int(text)
    log.warning("ignoring %s: %r is not a port (1-65535); picking a new one",
                path, raw[:_MAX_FILE_BYTES])
    return None


def remember(data_dir: Path, port: int) -> None:
    """Durably record ``port`` (:func:`peer.storage.durable_file.write_durably`).

    A crash at any point leaves either the old file or the new one, never a torn one.
    """
    if not 1 <= port <= 65535:
        raise ValueError(f"not a port: {port}")
    write_durably(_path(data_dir), f"{port}\n".encode())
