"""`python -m peer serve`: run one node until a signal, print what it reports.

The node reports through :class:`peer.reports.NodeReports`; here that is the CLI's
:class:`~peer.cli.output.Output`, text or JSON lines. An expected failure at start
becomes one line and its own exit code (:mod:`peer.startup`, :mod:`peer.exit_codes`).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import trio

from peer import exit_codes
from peer.cli.output import Output
from peer.config import NodeConfig, with_env_overrides
from peer.net.control_socket import ControlSocketError
from peer.node import Node
from peer.startup import CannotListen, DataDirUnusable, StartupFailure, leaves
from peer.storage.dir_lock import DataDirInUse
from peer.storage.key_file import IdentityError
from peer.storage.store_errors import StoreError

__all__ = ["serve"]

log = logging.getLogger(__name__)


def serve(config: NodeConfig, *, log_level: int = logging.INFO) -> int:
    """Run a node until SIGINT/SIGTERM; the exit code for `python -m peer serve`.

    An expected failure (:mod:`peer.startup`) is one line on stderr, an ``error``
    object with ``--json``, and its own exit code (:mod:`peer.exit_codes`).
    """
    _setup_logging(log_level)
    output = Output(json_lines=config.json_output)
    try:
        config = with_env_overrides(config, os.environ)
    except ValueError as exc:
        log.error("%s", exc)
        output.error("BAD_USAGE", str(exc))
        return exit_codes.USAGE
    stopped_by = "stopped"

    async def main() -> None:
        nonlocal stopped_by
        # The receiver comes first: the ready line is out before `start` returns, and
        # a SIGTERM sent on seeing it must stop the node cleanly, not kill it.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(Node(config, output).run)
                async for signum in signals:
                    stopped_by = signal.Signals(signum).name
                    log.info("%s: stopping (%s)", config.name, stopped_by)
                    nursery.cancel_scope.cancel()
                    break

    failures: list[BaseException] = []
    interrupted = False
    try:
        trio.run(main)
    except* (StartupFailure, OSError, StoreError, IdentityError, DataDirInUse,
             ControlSocketError) as group:
        # Expected ways to fail (port taken, damaged database or key, data dir or
        # control socket in use): one readable line each, no traceback, whatever
        # nurseries the error came through.
        failures.extend(leaves(group))
    except* KeyboardInterrupt:
        interrupted = True
    if failures:
        for failure in failures:
            log.error("%s: %s", config.name, failure)
        code, exit_code = _classify(failures[0], config.data_dir)
        output.error(code, str(failures[0]))
        return exit_code
    if interrupted:
        log.info("%s: interrupted while starting", config.name)
        output.error("INTERRUPTED", "interrupted while starting")
        return exit_codes.INTERRUPTED
    output.stopped(stopped_by)
    return exit_codes.OK


def _classify(failure: BaseException, data_dir: Path) -> tuple[str, int]:
    """The JSON error code and the exit code for one failure of `serve`."""
    if isinstance(failure, StartupFailure):
        return failure.code, failure.exit_code
    if isinstance(failure, ControlSocketError):
        return CannotListen.code, CannotListen.exit_code
    if isinstance(failure, StoreError | IdentityError | DataDirInUse):
        return DataDirUnusable.code, DataDirUnusable.exit_code
    # A bare OSError: a file of the data dir, or else the network.
    filename = getattr(failure, "filename", None)
    if filename is not None and Path(os.fsdecode(filename)).resolve().is_relative_to(
            data_dir.resolve()):
        return DataDirUnusable.code, DataDirUnusable.exit_code
    return CannotListen.code, CannotListen.exit_code


def _setup_logging(level: int) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # grpclib logs every failed connection at ERROR with a traceback; a dead peer
    # is expected and handled by the mesh, so keep those out of the user's way.
    logging.getLogger("grpclib").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
