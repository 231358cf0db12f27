"""What a node tells whoever runs it: ready, peers up and down, notifications, progress.

The node reports through this protocol instead of printing: `serve` hands it the
CLI's printer (text or JSON lines), `demo` the same printer for several nodes, and
tests a quiet one or a list. So the node knows that something happened, never how it
is shown.
"""

from __future__ import annotations

from typing import Protocol

from peer.gen.auction.v1 import Notification
from peer.net.self_check import NOT_RUN, SelfCheck
from peer.progress import ProgressSink

__all__ = ["NodeReports", "Quiet"]


class NodeReports(ProgressSink, Protocol):
    def ready(self, name: str, node_id: bytes, port: int, synced: int, events: int,
              control_socket: str, check: SelfCheck = NOT_RUN) -> None: ...

    def notification(self, note: Notification) -> None: ...

    def peer(self, up: bool, name: str, node_id: bytes, address: str,
             reason: str = "") -> None: ...


class Quiet:
    """Reports nothing: for a node embedded where logs are enough."""

    def ready(self, name: str, node_id: bytes, port: int, synced: int, events: int,
              control_socket: str, check: SelfCheck = NOT_RUN) -> None:
        pass

    def notification(self, note: Notification) -> None:
        pass

    def peer(self, up: bool, name: str, node_id: bytes, address: str,
             reason: str = "") -> None:
        pass

    def progress(self, synced: int, expected: int, rate: float) -> None:
        pass

    def end_progress(self) -> None:
        pass
