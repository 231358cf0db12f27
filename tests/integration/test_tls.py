"""TLS on the public port: bound to the node key, a man in the middle refused, and
nodes that disagree on TLS say so instead of failing obscurely."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import localgrape
from devsupport.serving import QuietMeshHooks
from peer.cli.output import Output
from peer.config import NodeConfig
from peer.core.identity import Identity
from peer.net import aio
from peer.net.h2_guard import GuardedChannel
from peer.net.mesh import DOWN, UP, Mesh, PeerLink
from peer.net.tls import CertificateChanged, client_context, server_context
from peer.node import Node, ReadyInfo
from peer.storage import tls_cert


@contextlib.asynccontextmanager
async def _node(tmp_path: Path, *, tls: bool) -> AsyncIterator[tuple[ReadyInfo, aio.Bridge]]:
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        node = Node(NodeConfig(name="Seller", data_dir=tmp_path / "seller",
                               grape_urls=(grape.url,), tls=tls),
                    Output(json_lines=True, stream=io.StringIO()))
        info = await nursery.start(node.run)
        async with aio.open_loop() as loop:
            yield info, aio.Bridge(loop)
        nursery.cancel_scope.cancel()


class _Relay:
    """A relay on 127.0.0.1 that forwards every connection to ``port``: with
    ``listen``, it terminates TLS with its own certificate and opens its own TLS
    connection upstream, as someone on the path who can read and change everything."""

    def __init__(self, server: asyncio.Server, relayed: Callable[[], int],
                 tasks: set[asyncio.Task[Any]], writers: list[asyncio.StreamWriter]) -> None:
        self.server, self.relayed, self._tasks, self._writers = server, relayed, tasks, writers
        self.port: int = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _relay(listen: ssl.SSLContext | None, upstream: ssl.SSLContext | None,
                 port: int) -> _Relay:
    relayed = 0
    tasks: set[asyncio.Task[Any]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                # Closed meanwhile (stop(), or the other direction ended): a second
                # close() of an SSL transport drops its protocol, and a write then
                # raises AttributeError inside asyncio (CPython 3.11's sslproto).
                if writer.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal relayed
        relayed += 1
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.append(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port, ssl=upstream)
        writers.append(up_writer)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=listen)
    return _Relay(server, lambda: relayed, tasks, writers)


async def _probe_through_relay(bridge: aio.Bridge, info: ReadyInfo, relay_port: int,
                               tls: bool) -> PeerLink:
    """Probe the node's real address while the network delivers to the relay."""
    mesh = Mesh(Identity.generate("Bidder"), "127.0.0.1:1", QuietMeshHooks(), bridge, tls=tls)
    link = PeerLink(f"127.0.0.1:{info.port}", tls=tls)

    async def dial_relay() -> None:
        link.channel = GuardedChannel("127.0.0.1", relay_port,
                                      ssl=client_context() if tls else None)
        link.opened.append(link.channel)

    await bridge.to_trio(dial_relay)
    try:
        await mesh.probe(link)
    finally:
        link.closed = True
        link.close_channel()
    return link


async def test_a_tls_node_proves_its_key_over_its_certificate(tmp_path: Path) -> None:
    async with _node(tmp_path, tls=True) as (info, bridge):
        mesh = Mesh(Identity.generate("Bidder"), "127.0.0.1:1", QuietMeshHooks(), bridge, tls=True)
        link = PeerLink(f"127.0.0.1:{info.port}", tls=True)
        try:
            assert await mesh.probe(link)
            assert link.state == UP and link.node_id == info.node_id
            channel = link.channel
            assert isinstance(channel, GuardedChannel)
            assert channel.binding == tls_cert.load_or_create(tmp_path / "seller").binding
            assert await mesh.who_is_at(link.address) == info.node_id
        finally:
            link.closed = True
            link.close_channel()
    # The certificate is kept 0600 next to the node key, and reused by a restart.
    pem = tmp_path / "seller" / tls_cert.CERTIFICATE_FILE
    assert pem.stat().st_mode & 0o777 == 0o600
    assert tls_cert.load_or_create(tmp_path / "seller").der == \
        tls_cert.load_or_create(tmp_path / "seller").der


async def test_a_man_in_the_middle_with_its_own_certificate_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    relay_cert = tls_cert.load_or_create(tmp_path / "relay")
    async with _node(tmp_path, tls=True) as (info, bridge):
        relay = await bridge.to_trio(_relay, server_context(relay_cert), client_context(),
                                     info.port)
        try:
            with caplog.at_level(logging.WARNING, logger="peer.mesh"):
                link = await _probe_through_relay(bridge, info, relay.port, tls=True)
        finally:
            await bridge.to_trio(relay.stop)
    assert relay.relayed() >= 1  # the relay did carry the handshake to the real node
    assert link.state == DOWN and link.reason == "did not prove its id"
    assert "TLS certificate this connection saw" in link.last_error
    assert any("did not prove it" in r.getMessage() for r in caplog.records)


async def test_without_tls_the_same_relay_passes(tmp_path: Path) -> None:
    # What TLS adds: on plain TCP a relay on the path is taken for the node (it can
    # then read and drop everything, though it still forges nothing signed).
    async with _node(tmp_path, tls=False) as (info, bridge):
        relay = await bridge.to_trio(_relay, None, None, info.port)
        try:
            link = await _probe_through_relay(bridge, info, relay.port, tls=False)
        finally:
            await bridge.to_trio(relay.stop)
    assert relay.relayed() >= 1
    assert link.state == UP and link.node_id == info.node_id


async def test_a_reconnection_to_another_certificate_is_refused(tmp_path: Path) -> None:
    # A channel whose node was proved must not silently reconnect somewhere else.
    other = tls_cert.load_or_create(tmp_path / "other")
    async with _node(tmp_path, tls=True) as (info, bridge):
        relay = await bridge.to_trio(_relay, server_context(other), client_context(),
                                     info.port)
        channel = GuardedChannel("127.0.0.1", info.port, ssl=client_context())

        async def connect_twice() -> None:
            await channel.__connect__()
            first = channel.binding
            channel._port = relay.port  # the "same" address, answered by another later
            old, channel._protocol = channel._protocol, None  # as after a lost connection
            old.connection.close()
            with pytest.raises(CertificateChanged):
                await channel.__connect__()
            assert channel.binding == first

        try:
            await bridge.to_trio(connect_twice)
        finally:
            channel.close()
            await bridge.to_trio(relay.stop)


@pytest.mark.parametrize("caller_tls", [True, False], ids=["tls-calls-plain", "plain-calls-tls"])
async def test_nodes_that_disagree_on_tls_say_so(tmp_path: Path, caller_tls: bool,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    said = trio.Event()

    class _Said(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "speaks TLS" in record.getMessage():
                said.set()

    handler = _Said()
    logging.getLogger("peer.h2_guard").addHandler(handler)
    async with _node(tmp_path, tls=not caller_tls) as (info, bridge):
        mesh = Mesh(Identity.generate("Bidder"), "127.0.0.1:1", QuietMeshHooks(), bridge,
                    tls=caller_tls)
        link = PeerLink(f"127.0.0.1:{info.port}", tls=caller_tls)
        with caplog.at_level(logging.WARNING):
            try:
                assert not await mesh.probe(link)
            finally:
                link.closed = True
                link.close_channel()
            if caller_tls:
                # The plain callee's warning comes from its side of the same connection.
                with trio.move_on_after(5):
                    await said.wait()
    logging.getLogger("peer.h2_guard").removeHandler(handler)
    assert link.state == DOWN
    if caller_tls:
        assert link.reason == "TLS handshake failed"
        assert any("TLS handshake failed" in m and "--no-tls" in m for m in warnings())
        assert any("speaks TLS to this node, which runs with --no-tls" in m
                   for m in warnings()), warnings()
    else:
        # A plain caller only sees its connection closed (the TLS node's side of the
        # same disagreement is the warning above, when it calls this one).
        assert link.node_id == b"" and "lost" in link.last_error.lower(), link.last_error


def test_a_damaged_certificate_file_is_replaced(tmp_path: Path) -> None:
    first = tls_cert.load_or_create(tmp_path)
    for damage in (b"", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                   first.path.read_bytes()[:200]):
        first.path.write_bytes(damage)
        again = tls_cert.load_or_create(tmp_path)
        assert again.der != first.der and len(again.binding) == 32
        first = again
    assert sorted(p.name for p in tmp_path.iterdir()) == [tls_cert.CERTIFICATE_FILE]


def test_making_a_certificate_leaves_cryptography_out_of_the_node(tmp_path: Path) -> None:
    # cryptography would stay in a node's memory for good (about 8 MiB): a child
    # process makes the certificate, and the node only loads it with `ssl`.
    probe = ("import sys; from pathlib import Path; from peer.storage import tls_cert; "
             "made = tls_cert.load_or_create(Path(sys.argv[1])); "
             "print(len(made.binding), 'cryptography' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert out == ["32", "False"]
    assert (tmp_path / tls_cert.CERTIFICATE_FILE).stat().st_mode & 0o777 == 0o600


def test_a_failing_certificate_maker_is_a_clear_error(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # An interpreter that cannot run the maker (here: one that exits at once).
    monkeypatch.setattr(tls_cert.sys, "executable", "/bin/false")
    with pytest.raises(tls_cert.TlsCertificateError, match="certificate maker failed"):
        tls_cert.load_or_create(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half-made file left behind
