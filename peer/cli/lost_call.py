"""What the CLI says when the node went away in the middle of a call.

The request may have reached the node and been carried out (a bid accepted, an
auction opened or closed) before the node died or stopped answering, so the CLI
must not claim either way: it says the outcome is unknown and which command shows
it once a node runs on that data dir again.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LostCall", "describe"]

#: JSON ``error`` of a call whose effect is unknown, and of a read that got no answer.
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
NODE_LOST = "NODE_LOST"
_CHANGES = frozenset({"open", "bid", "close"})


@dataclass(frozen=True)
class LostCall:
    """The user-facing report: a line for stderr and one JSON object for ``--json``."""

    text: str
    json: dict[str, Any]


def describe(command: str, why: str, *, auction: str | None, name: str | None,
             data_dir: Path | None) -> LostCall:
    """The report for ``command`` (``bid``...), lost because of ``why``."""
    target = (f"--name {shlex.quote(name)}" if name is not None
              else f"--data-dir {shlex.quote(str(data_dir))}")
    if command not in _CHANGES:
        text = (f"error: the node stopped answering during `{command}` ({why}); nothing "
                f"was changed. Is the node still running? `python -m peer status {target}`")
        return LostCall(text, {"error": NODE_LOST, "reason": why, "command": command})
    if auction is not None:
        check = f"python -m peer show {shlex.quote(auction)} {target}"
    else:  # `open`: the auction's id would have been in the reply
        check = f"python -m peer list {target}"
    text = (f"error: the node stopped answering during `{command}` ({why}): the outcome is "
            f"unknown, it may or may not have been carried out. Once the node runs again, "
            f"check with `{check}`")
    return LostCall(text, {"error": OUTCOME_UNKNOWN, "reason": why, "command": command,
                           "check": check})
