"""One auction node: starts its parts and wires identity, store, mesh, sync and RPC.

:class:`Node` owns the lifecycle: it locks the data dir, opens the store, rebuilds the
ledger, binds the public port and the Control socket, joins the mesh, syncs, and
only then reports ready. What it does once running lives in its parts:
:mod:`peer.node.event_log` (apply, persist, announce), :mod:`peer.node.deadlines`,
:mod:`peer.node.peer_handlers` and :mod:`peer.node.control_handlers`.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import trio
from grpclib.health.service import Health

from grape_client import GrapeClient, GrapeClientError, announce_forever
from peer.gen.auction.v1 import Goodbye, LeaveRequest, SignedEvent
from peer.net import aio, tls
from peer.net.address_book import AddressLimits
from peer.net.codec import LimitedCodec
from peer.net.control_socket import prepare_to_listen
from peer.net.mesh import Mesh, PeerLink
from peer.net.rate_limit import PeerRateLimiter
from peer.net.rpc import ControlService, PeerService
from peer.net.self_check import FAILED, check_self
from peer.net.server import Server
from peer.net.sync import anti_entropy, pull_from_all
from peer.node.control_handlers import ControlHandlers
from peer.node.peer_handlers import PeerHandlers
from peer.node.state import now_ms
from peer.progress import SyncProgress, expected_events
from peer.startup import CannotListen, cannot_listen
from peer.storage import paths, port_memory, tls_cert
from peer.storage.data_dir_identity import StartIdentity
from peer.storage.dir_lock import DataDirLock
from peer.storage.names import record_owner
from peer.storage.store import EventStore

log = logging.getLogger(__name__)


# How long start-up waits for peers to answer Hello before syncing from those that did.
INITIAL_PROBE_WAIT = 1.0


# How long a stopping node waits for its servers' handlers to end (they are cancelled).
STOP_WAIT = 5.0


# How often the self-check runs again once it passed: an address can change (DHCP,
# a moved host); while it fails, it runs every announce interval.
SELF_CHECK_RECHECK = 60.0


# Per-phase timeout of the node's Grape calls (GrapeClient's default is 2.5 s). A real
# grape answers a lookup or announce only when its DHT traversal ends, and a DHT
# node that vanished costs that traversal k-rpc's 2 s query timeout, checked every
# 0.5 s: measured 2.5 s, and 4.7 s for the first lookup after the loss. At 2.5 s every
# lookup raced the timeout and lost under load: no self-check, no peers found.
GRAPE_TIMEOUT = 6.0


@dataclass(frozen=True)
class ReadyInfo:
    """What a started node reports (``nursery.start(node.run)`` returns it)."""

    name: str
    node_id: bytes
    port: int
    synced: int
    control_socket: Path


def _jitter() -> float:
    return random.uniform(0.8, 1.2)


class Node(ControlHandlers, PeerHandlers):
    """A running auction node. ``await nursery.start(Node(config).run)``."""

    async def run(self, *, task_status: trio.TaskStatus[ReadyInfo] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run until cancelled; ``started()`` is called only after the initial sync."""
        config = self.config
        # Before the key or the database is touched: a second node on this data dir
        # would append to the same log with the same key.
        with DataDirLock.acquire(config.data_dir):
            store = EventStore.open(paths.database_path(config.data_dir))
            self.store = store
            start: StartIdentity | None = None
            try:
                try:
                    record_owner(config.data_dir, config.name)
                except OSError as exc:
                    # Only a hint for finding data dirs older versions made: a data
                    # dir that is full or read-only still serves what it holds.
                    log.warning("%s: cannot record the node's name in %s: %s", config.name,
                                paths.owner_path(config.data_dir), exc)
                start = StartIdentity.open(config.data_dir, config.name, store)
                self.identity = start.identity
                if config.use_tls:
                    self._certificate = tls_cert.load_or_create(config.data_dir)
                rebuilt = self._rebuild(store)
                log.info("%s: %d event(s) loaded from %s", config.name, rebuilt,
                         paths.database_path(config.data_dir))
                # The loop closes first: it waits for the Peer handlers still running (a
                # Sync page, a Push), which use the store until then.
                async with store, aio.open_loop() as loop:
                    # A seller that was offline at an auction's end closes it first
                    # thing, before its servers take any bid.
                    await self.close_overdue()
                    await self._serve(aio.Bridge(loop), task_status)
            finally:
                store.close()
                if (start is not None and start.created and not self._ready
                        and start.identity.node_id not in self.ledger.heads()):
                    log.info("%s: the first start failed; its new key and database were "
                             "removed", config.name)
                    start.abandon()

    def _rebuild(self, store: EventStore) -> int:
        # Rows were verified before they were stored and carry a CRC, so the
        # signature check is skipped here: that is what keeps restarts fast.
        count = 0
        for row in store.load_all():
            result = self.ledger.apply(SignedEvent(event=row.data, signature=row.signature),
                                       verified=True)
            if result.rejection is not None:
                log.warning("stored event %s:%d not applied: %s", row.author.hex()[:8],
                            row.seq, result.rejection)
            count += 1
        return count

    async def _serve(self, bridge: aio.Bridge, task_status: trio.TaskStatus[ReadyInfo]
                     ) -> None:
        config = self.config
        assert self.identity is not None
        health = Health()
        certificate = self._certificate
        peer_server = Server([PeerService(self, PeerRateLimiter(config.rate_limits),
                                          binding=certificate.binding if certificate else b""),
                              health],
                             codec=LimitedCodec(),
                             limits=self.config.transport_limits,
                             ssl=tls.server_context(certificate) if certificate else None)
        control_server = Server([ControlService(self)], codec=LimitedCodec())
        socket_path = paths.control_socket_path(config.data_dir)
        async with GrapeClient(list(config.grape_urls), timeout=GRAPE_TIMEOUT) as grape:
            try:
                self.port = await self._bind_peer_server(peer_server)
            except OSError as exc:
                raise cannot_listen(config.host, config.port, exc) from exc
            try:
                prepare_to_listen(socket_path)
                # Only this user may drive the node: create the socket 0600 from the start.
                old_umask = os.umask(0o177)
                try:
                    await aio.start_server(control_server, path=str(socket_path))
                except OSError as exc:
                    raise CannotListen(f"cannot create the control socket {socket_path}: "
                                       f"{exc.strerror or exc}") from exc
                finally:
                    os.umask(old_umask)
                try:
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        self.mesh = Mesh(self.identity,
                                         f"{config.host}:{self.port}", self, bridge,
                                         AddressLimits(config.max_addresses,
                                                       config.max_new_addresses_per_lookup,
                                                       config.forget_after),
                                         tls=certificate is not None)
                        self.mesh.liveness_idle = config.liveness_interval
                        await nursery.start(self.mesh.run)
                        announcer = functools.partial(announce_forever, grape, config.service,
                                                      self.port,
                                                      interval=config.announce_interval)
                        await nursery.start(announcer)
                        await self._check_self(grape)
                        nursery.start_soon(self._self_check_loop, grape)
                        synced = await self._initial_sync(grape)
                        nursery.start_soon(self._discovery_loop, grape)
                        nursery.start_soon(anti_entropy, self, self.mesh,
                                           config.anti_entropy_interval, _jitter)
                        nursery.start_soon(self.deadline_loop)
                        self._ready = True
                        info = ReadyInfo(config.name, self.identity.node_id, self.port,
                                         synced, socket_path)
                        self.reports.ready(info.name, info.node_id, info.port, synced,
                                          self.ledger.event_count, str(socket_path),
                                          self.self_check)
                        task_status.started(info)
                        try:
                            await trio.sleep_forever()
                        finally:
                            with trio.CancelScope(shield=True):
                                await self._goodbye()
                finally:
                    # First, before any await: a stop by signal arrives as a
                    # cancellation, and the first checkpoint would end this block.
                    # The data dir's lock, still held, makes the socket ours.
                    socket_path.unlink(missing_ok=True)
                    with trio.move_on_after(STOP_WAIT, shield=True):
                        await aio.stop_server(control_server)
            finally:
                with trio.move_on_after(STOP_WAIT, shield=True):
                    await aio.stop_server(peer_server)
                self._close_watchers()
                if self.mesh is not None:
                    # Calls cancelled mid-flight may have reopened a channel.
                    self.mesh.close_channels(final=True)

    async def _bind_peer_server(self, server: Server) -> int:
        """Start the public server; returns its port.

        ``--port P`` binds P. Otherwise the port picked on an earlier start is reused
        (it is remembered in the data dir), so the node keeps one address; when that
        port is taken, a new one is picked and remembered instead.
        """
        config = self.config
        if config.port:
            await aio.start_server(server, host=config.host, port=config.port)
            return config.port
        remembered = port_memory.recall(config.data_dir)
        if remembered is not None:
            try:
                await aio.start_server(server, host=config.host, port=remembered)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise  # e.g. a --host that is not ours: a new port would fail the same
                log.warning("%s: port %d (remembered from the last start) is taken; "
                            "picking a new one", config.name, remembered)
            else:
                log.info("%s: reusing port %d from the last start", config.name, remembered)
                return remembered
        await aio.start_server(server, host=config.host, port=0)
        port = server.port
        try:
            port_memory.remember(config.data_dir, port)
        except OSError as exc:
            # Not fatal: the node works, it only gets a new address next time.
            log.warning("%s: cannot remember port %d in %s (%s): the next start picks "
                        "another one", config.name, port, config.data_dir, exc)
        else:
            log.info("%s: picked port %d; later starts reuse it (pass --port to choose)",
                     config.name, port)
        return port

    async def _check_self(self, grape: GrapeClient) -> None:
        """Run the self-check once; log when its outcome changes (a WARNING with the fix
        when it fails)."""
        assert self.identity is not None and self.mesh is not None
        config = self.config
        result = await check_self(functools.partial(grape.lookup, config.service),
                                  self.mesh.who_is_at, self.identity.node_id, self.port,
                                  config.host, service=config.service)
        before, self.self_check = self.self_check, result
        if result.passed:
            # Discovery then skips our own record instead of probing it as a peer.
            self.mesh.own_address = result.address
        if result.passed and before != result:
            log.info("%s: self-check passed: peers reach this node at %s", config.name,
                     result.address)
        elif result.state == FAILED and (before.state, before.detail) != (FAILED,
                                                                            result.detail):
            log.warning("%s: self-check FAILED, other nodes cannot reach this one: %s",
                        config.name, result.detail)

    async def _self_check_loop(self, grape: GrapeClient) -> None:
        while True:
            wait = SELF_CHECK_RECHECK if self.self_check.passed else self.config.announce_interval
            await trio.sleep(wait * _jitter())
            await self._check_self(grape)

    async def _initial_sync(self, grape: GrapeClient) -> int:
        """Pull from every peer that is up; returns how many events that added."""
        assert self.mesh is not None
        before = self.ledger.event_count
        found = await self._discover(grape)
        # Peers that answer Hello quickly are enough to start from; a black-holed
        # address must not hold up the start (it is probed on in the background,
        # and a peer that comes up later triggers a pull of its own).
        with trio.move_on_after(INITIAL_PROBE_WAIT):
            await self.mesh.wait_probed(found)
        progress = SyncProgress(expected_events(
            self.ledger.heads(), [link.heads for link in self.mesh.up_links()]))
        self._sync_progress = progress
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(progress.report, self.reports, self.config.progress_interval)
                # peer_up also starts pulls, which may win the race for the same events;
                # counting the ledger, not the pulls, reports what sync really brought.
                await pull_from_all(self, self.mesh)
                nursery.cancel_scope.cancel()
        finally:
            self._sync_progress = None
        return self.ledger.event_count - before

    async def _discover(self, grape: GrapeClient) -> list[PeerLink]:
        """Look peers up in Grape and start probing the new ones; returns those."""
        assert self.mesh is not None
        try:
            addresses = await grape.lookup(self.config.service)
        except GrapeClientError as exc:
            log.debug("lookup failed: %s", exc)
            return []
        return self.mesh.add_addresses(addresses)

    async def _discovery_loop(self, grape: GrapeClient) -> None:
        while True:
            await trio.sleep(self.config.lookup_interval * _jitter())
            await self._discover(grape)

    async def _goodbye(self) -> None:
        assert self.identity is not None and self.mesh is not None
        goodbye = bytes(Goodbye(node_id=self.identity.node_id, time_ms=now_ms()))
        request = LeaveRequest(goodbye=goodbye, signature=self.identity.sign(goodbye))
        try:
            with trio.move_on_after(2.0):
                await self.mesh.say_goodbye(request)
        finally:
            self.mesh.close_channels()
