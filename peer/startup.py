"""Why a node could not start, as one line and an exit code.

`serve` fails at start for a few expected reasons: the data dir cannot be used,
or the public port or control socket cannot be opened. Each becomes one line
naming the cause and a documented exit code (:mod:`peer.exit_codes`), never a
traceback or an exception group.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from peer import exit_codes

__all__ = ["CannotListen", "DataDirUnusable", "StartupFailure", "cannot_listen", "leaves"]


class StartupFailure(Exception):
    """An expected reason not to start; ``exit_code`` and ``code`` say which."""

    exit_code: int = exit_codes.CANNOT_LISTEN
    code: str = "START_FAILED"


class DataDirUnusable(StartupFailure):
    """The data dir (its key, its database, the dir itself) cannot be used."""

    exit_code = exit_codes.DATA_DIR
    code = "DATA_DIR_UNUSABLE"


class CannotListen(StartupFailure):
    """The public Peer port or the control socket cannot be opened."""

    exit_code = exit_codes.CANNOT_LISTEN
    code = "CANNOT_LISTEN"


@dataclass(frozen=True)
class _Advice:
    what: str
    hint: str


_BY_ERRNO = {
    errno.EADDRINUSE: _Advice("the port is already in use",
                              "pick another --port, or --port 0 for a free one"),
    errno.EADDRNOTAVAIL: _Advice("that address is not one of this machine's",
                                 "use an address of this machine for --host, e.g. 127.0.0.1"),
    errno.EACCES: _Advice("permission denied", "ports below 1024 need privileges"),
}


def cannot_listen(host: str, port: int, exc: OSError) -> CannotListen:
    """The one-line reason for a failed bind of the public Peer service."""
    where = f"{host}:{port}" if port else f"{host} (any free port)"
    if isinstance(exc, socket.gaierror):
        return CannotListen(f"cannot listen on {where}: --host {host!r} is not an address "
                            f"of this machine ({exc.strerror or exc})")
    advice = _BY_ERRNO.get(exc.errno or 0)
    if advice is not None:
        return CannotListen(f"cannot listen on {where}: {advice.what} ({advice.hint})")
    return CannotListen(f"cannot listen on {where}: {exc.strerror or exc}")


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and its nested groups (nurseries nest them)."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found
