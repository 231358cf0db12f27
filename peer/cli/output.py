"""What `serve` prints: readable lines or one JSON object per line on stdout.

Logs (what the node did and why) go to stderr through `logging`; stdout carries
only the user-facing events, so `serve --json | jq` works. Sync progress is the
exception: as text it is one line rewritten in place on stderr, and only when
stderr is a terminal (a log file would fill with it); with ``--json`` it is a
``progress`` object on stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from peer.cli.render import notification_json, short_id
from peer.gen.auction.v1 import Notification
from peer.net.self_check import NOT_RUN, SelfCheck

__all__ = ["Output"]


class Output:
    """Writes the node's user-facing events to ``stream`` (stdout by default)."""

    def __init__(self, *, json_lines: bool, stream: TextIO | None = None,
                 progress_stream: TextIO | None = None) -> None:
        self.json_lines = json_lines
        self.stream = stream if stream is not None else sys.stdout
        self.progress_stream = progress_stream if progress_stream is not None else sys.stderr
        self._progress_shown = False

    def _emit(self, record: dict[str, Any], line: str | None) -> None:
        if not self.json_lines and line is None:
            return
        self._end_progress_line()
        text = json.dumps(record, ensure_ascii=False) if self.json_lines else line
        try:
            self.stream.write(f"{text}\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            # Whoever read our stdout went away; the node keeps serving its peers.
            pass

    def ready(self, name: str, node_id: bytes, port: int, synced: int, events: int,
              control_socket: str, check: SelfCheck = NOT_RUN) -> None:
        if check.passed:
            reach = f"peers dial {check.address} (self-check passed)"
        else:
            reach = f"self-check {check.state.upper()}: {check.detail}"
        self._emit(
            {"event": "ready", "name": name, "node_id": node_id.hex(), "port": port,
             "synced": synced, "events": events, "control_socket": control_socket,
             "dial_address": check.address or None, "self_check": check.state,
             "self_check_detail": check.detail},
            f"{name} ({short_id(node_id)}) ready on port {port}: "
            f"{events} event(s), {synced} synced from peers; {reach}",
        )

    def notification(self, note: Notification) -> None:
        self._emit(notification_json(note), note.text)

    def peer(self, up: bool, name: str, node_id: bytes, address: str, reason: str = "") -> None:
        kind = "peer_up" if up else "peer_down"
        record: dict[str, Any] = {"event": kind, "peer": name, "peer_id": node_id.hex(),
                                  "address": address}
        line = f"peer {'up' if up else 'down'}: {name} ({short_id(node_id)}) at {address}"
        if reason:
            record["reason"] = reason
            line += f" ({reason})"
        self._emit(record, line)

    def progress(self, synced: int, expected: int, rate: float) -> None:
        """The initial sync so far: events applied, events the peers announced, rate."""
        left = max(0, expected - synced)
        if self.json_lines:
            self._emit({"event": "progress", "phase": "sync", "synced": synced,
                        "expected": expected, "left": left, "rate": round(rate, 1)}, None)
            return
        if not _is_terminal(self.progress_stream):
            return
        eta = f", about {left / rate:.0f} s left" if rate > 0 and left else ""
        self._write_progress(f"\rsyncing: {synced:,} of {expected:,} events "
                             f"({rate:,.0f}/s), {left:,} to go{eta}\x1b[K")
        self._progress_shown = True

    def end_progress(self) -> None:
        """The sync is over: leave the terminal's progress line clean."""
        self._end_progress_line()

    def _end_progress_line(self) -> None:
        if self._progress_shown:
            self._progress_shown = False
            self._write_progress("\r\x1b[K")

    def _write_progress(self, text: str) -> None:
        try:
            self.progress_stream.write(text)
            self.progress_stream.flush()
        except (BrokenPipeError, ValueError):
            pass

    def error(self, code: str, reason: str) -> None:
        """The node could not start or stopped on an error (JSON only: the log says it)."""
        self._emit({"event": "error", "error": code, "reason": reason}, None)

    def stopped(self, reason: str) -> None:
        """The node stopped cleanly (JSON only: the log says it)."""
        self._emit({"event": "stopped", "reason": reason}, None)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
