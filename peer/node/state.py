"""What every part of a node shares: its configuration, ledger, store, mesh and links.

A node is split by responsibility (:mod:`peer.node.event_log`, :mod:`peer.node.deadlines`,
:mod:`peer.node.peer_handlers`, :mod:`peer.node.control_handlers`, and
:mod:`peer.node.node` that starts and wires them); each part is a class over this
state, so a reader holds one responsibility at a time.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import trio

from peer.config import NodeConfig
from peer.core.auctions import AuctionKey
from peer.core.handshake import Challenges
from peer.core.identity import Identity
from peer.core.ledger import ApplyResult, Ledger
from peer.gen.auction.v1 import Notification
from peer.net.mesh import Mesh
from peer.net.self_check import NOT_RUN, SelfCheck
from peer.net.sync import PullGate
from peer.net.warn_once import WarnOnce
from peer.progress import SyncProgress
from peer.reports import NodeReports, Quiet
from peer.storage.in_flight import InFlight
from peer.storage.in_order import InOrder
from peer.storage.store import EventStore
from peer.storage.tls_cert import TlsCertificate

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class NodeState:
    """The state of one node; see :class:`peer.node.Node`."""

    def __init__(self, config: NodeConfig, reports: NodeReports | None = None, *,
                 wall_clock_ms: Callable[[], int] = now_ms) -> None:
        """``wall_clock_ms`` is the clock events are stamped with and auctions end by
        (ms since the epoch); tests pass one that follows trio's MockClock.
        ``reports`` hears what the node has to say to whoever runs it (nothing by
        default: `serve` passes the CLI's printer)."""
        self.config = config
        self.wall_clock_ms = wall_clock_ms
        self.reports: NodeReports = reports if reports is not None else Quiet()
        self.ledger = Ledger()
        self.identity: Identity | None = None
        self.store: EventStore | None = None
        self.mesh: Mesh | None = None
        self.port = 0
        self._watchers: list[trio.MemorySendChannel[Notification]] = []
        self._pull_gate = PullGate()
        self._nursery: trio.Nursery | None = None
        self._nonce = random.getrandbits(48)
        self._ready = False
        self._own_events: InOrder[ApplyResult] = InOrder()
        self.self_check: SelfCheck = NOT_RUN
        self._in_flight = InFlight()
        self._storage_outage: str | None = None  # why the log cannot be written, if so
        self._challenges = Challenges()
        self._certificate: TlsCertificate | None = None  # with TLS, once started
        self._unproven_callers = WarnOnce(log)
        self._sync_progress: SyncProgress | None = None
        # Set whenever events are applied: an end may have moved or a timed auction opened.
        self._deadlines_changed = trio.Event()
        # Other sellers' auctions already announced as ended (awaiting their Close).
        self._ended_announced: set[AuctionKey] = set()
        self._skew_warned: set[bytes] = set()
