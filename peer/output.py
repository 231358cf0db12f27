"""What `serve` prints on stdout: readable lines, or one JSON object per line.

Logs (what the node did and why) go to stderr through `logging`; stdout carries
only the user-facing events, so `serve --json | jq` works.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from peer.gen.auction.v1 import Notification
from peer.render import notification_json, short_id
from peer.self_check import NOT_RUN, SelfCheck

__all__ = ["Output"]


class Output:
    """Writes the node's user-facing events to ``stream`` (stdout by default)."""

    def __init__(self, *, json_lines: bool, stream: TextIO | None = None) -> None:
        self.json_lines = json_lines
        self.stream = stream if stream is not None else sys.stdout

    def _emit(self, record: dict[str, Any], line: str) -> None:
        text = json.dumps(record, ensure_ascii=False) if self.json_lines else line
        try:
            self.stream.write(text + "\n")
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
