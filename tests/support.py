"""Helpers shared by the test suites: free ports, waiting on conditions, real grapes.

The port and grape lookups themselves live in :mod:`devsupport`, shared with the
benchmarks; this module adds what needs pytest (skip, fail) and the test fakes.
"""

from __future__ import annotations

import io
import os
import random
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx
import pytest
import trio
from grpclib.client import Channel

from devsupport.grape import grape_answers, grape_bin
from devsupport.ports import free_port, free_tcp_udp_port
from peer.config import NodeConfig, with_env_overrides
from peer.net.mesh import Mesh
from peer.net.tls import client_context

if TYPE_CHECKING:
    from peer.core.identity import Identity
    from peer.node import Node

__all__ = [
    "BASE",
    "ROOT",
    "Address",
    "FakeEndpoint",
    "FakeNet",
    "GrapeProc",
    "addr",
    "free_port",
    "free_tcp_udp_port",
    "grape_answers",
    "grape_bin",
    "grape_post",
    "in_process_node",
    "require_grape",
    "running",
    "running_grapes",
    "unique",
    "wait_until",
]

ROOT = Path(__file__).resolve().parent.parent


def node_tls() -> bool:
    """Whether the nodes a test starts serve TLS on their public port (the default,
    unless ``AUCTION_PEER_TLS`` says otherwise): what a test that calls that port
    directly must speak."""
    return with_env_overrides(NodeConfig(name="x", data_dir=Path()), os.environ).use_tls


def node_ssl() -> ssl.SSLContext | None:
    """The ``ssl`` argument for a grpclib ``Channel`` to a node's public port."""
    return client_context() if node_tls() else None


def close_now(channel: Channel) -> None:
    """Close a grpclib channel to a node, and its socket at once.

    Over TLS, ``Channel.close`` starts a graceful TLS shutdown that needs the loop a
    while longer; a test's ``asyncio.run`` ends first and leaves the socket behind
    (a ResourceWarning). A test client needs no graceful end: abort the transport.
    """
    # Taken first: grpclib's close drops its reference to the transport.
    protocol = getattr(channel, "_protocol", None)
    transport = getattr(getattr(protocol, "connection", None), "_transport", None)
    channel.close()
    if transport is not None:
        transport.abort()


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` (blocking) until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


async def wait_mesh(mesh: Mesh, predicate: Callable[[], bool], what: str) -> None:
    """Wait for ``predicate`` on every change of ``mesh``; fail after 10 s naming ``what``."""
    with trio.move_on_after(10):
        while not predicate():
            await mesh.wait_changed()
        return
    raise AssertionError(f"timed out waiting for {what}")


def in_process_node(data_dir: Path, identity: Identity, store: Any, mesh: Any, *,
                    out: io.StringIO | None = None,
                    wall_clock_ms: Callable[[], int] | None = None) -> Node:
    """A Node as `serve` wires it, minus the network and the start-up: ready, named and
    keyed as ``identity``, on ``store`` and ``mesh`` (fakes welcome), its reports as
    JSON lines in ``out`` (a buffer of its own unless given)."""
    from peer.cli.output import Output
    from peer.config import NodeConfig
    from peer.node import Node

    clock: dict[str, Callable[[], int]] = {} if wall_clock_ms is None else {
        "wall_clock_ms": wall_clock_ms}
    node = Node(NodeConfig(name=identity.name, data_dir=data_dir),
                Output(json_lines=True, stream=io.StringIO() if out is None else out),
                **clock)
    node.identity = identity
    node.store = store
    node.mesh = mesh
    node._ready = True
    return node


def require_grape() -> str:
    """Return the grape binary, skip without it, or fail when REQUIRE_GRAPE=1."""
    found = grape_bin()
    if found is None:
        msg = "real grenache-grape not found (run `npm ci` or set GRAPE_BIN)"
        if os.environ.get("REQUIRE_GRAPE") == "1":
            pytest.fail(msg + "; REQUIRE_GRAPE=1 forbids skipping")
        pytest.skip(msg)
    return found


@dataclass
class GrapeProc:
    """One running grape process (real or localgrape)."""

    dht_port: int
    api_port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


# A port picked free can be taken before the grape binds it: tests and the nodes they
# start open outgoing connections from the same ephemeral range. Such a start is
# retried on fresh ports; any other early exit fails the test.
_PORT_TAKEN = ("eaddrinuse", "address already in use")  # grape, localgrape
_START_TRIES = 3


@contextmanager
def running_grapes(argv0: list[str], count: int = 2, extra: list[str] | None = None,
                   bind: str | None = "127.0.0.1") -> Iterator[list[GrapeProc]]:
    """Start ``count`` grapes bootstrapped to each other, like the README's two-grape setup.

    ``argv0`` is the command that starts one grape (the real one or
    ``[python, -m, localgrape]``); it must take grape's CLI flags.
    """
    for attempt in range(1, _START_TRIES + 1):
        procs = _start_grapes(argv0, count, extra, bind)
        try:
            failed = _first_early_exit(procs)
            if failed is None:
                yield procs
                return
            if attempt == _START_TRIES or not any(m in failed.lower() for m in _PORT_TAKEN):
                pytest.fail(f"grape exited early: {failed}")
        finally:
            _stop_grapes(procs)


def _start_grapes(argv0: list[str], count: int, extra: list[str] | None,
                  bind: str | None) -> list[GrapeProc]:
    dht_ports = [free_tcp_udp_port() for _ in range(count)]
    api_ports = [free_port() for _ in range(count)]
    procs: list[GrapeProc] = []
    for i in range(count):
        others = ",".join(f"127.0.0.1:{p}" for j, p in enumerate(dht_ports) if j != i)
        args = [*argv0, "--dp", str(dht_ports[i]), "--aph", str(api_ports[i]),
                "--bn", others]
        if bind is not None:
            args += ["-b", bind]
        args += extra or []
        try:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except BaseException:
            _stop_grapes(procs)
            raise
        procs.append(GrapeProc(dht_ports[i], api_ports[i], proc))
    return procs


def _first_early_exit(procs: list[GrapeProc]) -> str | None:
    """Wait until every grape answers; the exit code and stderr of one that died instead."""
    for g in procs:
        wait_until(lambda g=g: grape_answers(g.url) or g.proc.poll() is not None,
                   timeout=20, what=f"grape on {g.api_port}")
        if g.proc.poll() is not None:
            err = g.proc.stderr.read().decode() if g.proc.stderr else ""
            return f"({g.proc.returncode}): {err}"
    return None


def _stop_grapes(procs: list[GrapeProc]) -> None:
    for g in procs:
        g.proc.terminate()
    for g in procs:
        try:
            g.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            g.proc.kill()
            g.proc.wait()
        if g.proc.stderr:
            g.proc.stderr.close()


async def grape_post(grape: GrapeProc, path: str, data: object, *,
                     rid: str) -> httpx.Response:
    """POST ``{"rid": rid, "data": data}`` to ``grape`` from a thread.

    The thread lets the test's own trio tasks (a KRPC node the grape queries over
    UDP) keep running while the HTTP call waits.
    """
    def post() -> httpx.Response:
        return httpx.post(grape.url + path, json={"rid": rid, "data": data}, timeout=10)
    return await trio.to_thread.run_sync(post)


def unique(prefix: str) -> str:
    """A service name no earlier test run used (real grapes keep announces for a while)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"

# ------------------------------------------------------------------ KRPC fakes (trio)

Address = tuple[str, int]
# Ports of the fake network's nodes: node ``i`` is at ``addr(i)``.
BASE = 7100


def addr(i: int) -> Address:
    """The fake network address of node ``i``."""
    return ("127.0.0.1", BASE + i)


class FakeNet:
    """An in-memory UDP network on 127.0.0.1. An address with no endpoint is a dead host.

    Lossless and instant by default. Given ``rng`` it drops, duplicates and delays
    datagrams (a terrible network); the deliveries then run in ``nursery``, which
    the test sets before anything is sent.
    """

    def __init__(self, rng: random.Random | None = None, *, drop: float = 0.0,
                 duplicate: float = 0.0, max_delay: float = 0.0) -> None:
        self.rng = rng
        self.drop, self.duplicate, self.max_delay = drop, duplicate, max_delay
        self.endpoints: dict[Address, trio.MemorySendChannel[tuple[bytes, Address]]] = {}
        self.nursery: trio.Nursery | None = None

    def endpoint(self, port: int) -> FakeEndpoint:
        send, receive = trio.open_memory_channel[tuple[bytes, Address]](10_000)
        address = ("127.0.0.1", port)
        assert address not in self.endpoints, "address in use"
        self.endpoints[address] = send
        return FakeEndpoint(self, address, receive)

    def route(self, data: bytes, src: Address, dst: Address) -> None:
        if self.rng is None:
            self._deliver_now(data, src, dst)
            return
        assert self.nursery is not None
        if self.rng.random() < self.drop:
            return
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            self.nursery.start_soon(self._deliver, data, src, dst,
                                    self.rng.random() * self.max_delay)

    async def _deliver(self, data: bytes, src: Address, dst: Address, delay: float) -> None:
        await trio.sleep(delay)
        self._deliver_now(data, src, dst)

    def _deliver_now(self, data: bytes, src: Address, dst: Address) -> None:
        channel = self.endpoints.get(dst)
        if channel is not None:
            channel.send_nowait((data, src))


class FakeEndpoint:
    """A :class:`~localgrape.krpc.DatagramTransport` on a :class:`FakeNet`."""

    def __init__(self, net: FakeNet, address: Address,
                 receive: trio.MemoryReceiveChannel[tuple[bytes, Address]]) -> None:
        self.net, self._address, self._receive = net, address, receive

    @property
    def local_address(self) -> Address:
        return self._address

    async def send(self, data: bytes, address: Address) -> None:
        self.net.route(data, self._address, address)

    async def receive(self, max_size: int) -> tuple[bytes, Address]:
        data, source = await self._receive.receive()
        return data[:max_size], source

    def close(self) -> None:
        if self.net.endpoints.get(self._address) is not None:
            del self.net.endpoints[self._address]
        self._receive.close()


class Runnable(Protocol):
    async def run(self, *, task_status: trio.TaskStatus[Address]) -> None: ...


RunnableT = TypeVar("RunnableT", bound=Runnable)


@asynccontextmanager
async def running(nursery: trio.Nursery, service: RunnableT) -> AsyncIterator[RunnableT]:
    """Run ``service`` (a Dht, a NetworkDht) in its own cancel scope until the block ends.

    Leaving the block kills it, so a test can make a peer die mid-test.
    """
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[Address]) -> None:
        with scope:
            await service.run(task_status=task_status)

    await nursery.start(run)
    try:
        yield service
    finally:
        scope.cancel()
