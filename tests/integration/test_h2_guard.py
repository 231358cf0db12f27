"""peer.net.h2_guard on a grpclib server: settings, in-flight budgets, connection caps, idle
timeout; driven by a raw HTTP/2 client."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpclib.const
from grpclib.const import Cardinality
from grpclib.exceptions import StreamTerminatedError
from grpclib.health.service import Health
from grpclib.server import Server as GrpclibServer
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes

from peer.gen.auction.v1 import PeerStub, SyncReply, SyncRequest
from peer.net.codec import LimitedCodec
from peer.net.h2_guard import GuardedChannel, TransportGuard, TransportLimits
from peer.net.server import Server
from tests.h2_attacker import MiB, declare_huge, open_h2

T = TypeVar("T")

HEALTH = "/grpc.health.v1.Health/Check"


def _with_server(limits: TransportLimits, attack: Callable[[int], T]) -> tuple[T, TransportGuard]:
    """Serve grpclib's health service with ``limits``; run blocking ``attack(port)``."""

    async def main() -> tuple[T, TransportGuard]:
        server = Server([Health()], limits=limits)
        await server.start("127.0.0.1", 0)
        try:
            assert server.guard is not None
            result = await asyncio.get_running_loop().run_in_executor(None, attack, server.port)
            return result, server.guard
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def _events_until(sock: socket.socket, conn: H2Connection, done: Callable[[list[object]], bool],
                  timeout: float = 10.0) -> list[object]:
    seen: list[object] = []
    deadline = time.monotonic() + timeout
    while not done(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; saw {seen}"
        readable, _, _ = select.select([sock], [], [], left)
        if readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                seen.append("closed")
                continue
            seen.extend(conn.receive_data(data))
            sock.sendall(conn.data_to_send())
    return seen


def test_settings_are_set_on_purpose() -> None:
    limits = TransportLimits(max_concurrent_streams=7, max_header_list_size=8192,
                             stream_window=128 * 1024)

    def attack(port: int) -> dict[int, int]:
        sock, conn = open_h2(port)
        with sock:
            changed: dict[int, int] = {}

            def done(seen: list[object]) -> bool:
                for event in seen:
                    if isinstance(event, RemoteSettingsChanged):
                        changed.update({k: v.new_value
                                        for k, v in event.changed_settings.items()})
                # grpclib sends h2's defaults first, the guard's values right after.
                return changed.get(SettingCodes.MAX_CONCURRENT_STREAMS) == 7
            _events_until(sock, conn, done)
            return changed

    changed, _ = _with_server(limits, attack)
    assert changed[SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert changed[SettingCodes.MAX_HEADER_LIST_SIZE] == 8192
    assert changed[SettingCodes.INITIAL_WINDOW_SIZE] == 128 * 1024


def test_messages_in_flight_on_one_connection_are_bounded() -> None:
    limits = TransportLimits(max_message_bytes=1 * MiB, connection_in_flight=2 * MiB)

    def attack(port: int) -> list[str | None]:
        # Three streams each declare a 1 MiB message and send only a little of it:
        # the first two fit the connection's 2 MiB budget, the third does not.
        sock, conn = open_h2(port)
        statuses: list[str | None] = []
        with sock:
            for _ in range(3):
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, [
                    (":method", "POST"), (":scheme", "http"), (":path", HEALTH),
                    (":authority", "x"), ("content-type", "application/grpc"),
                    ("te", "trailers")])
                conn.send_data(stream_id, b"\x00" + (1 * MiB).to_bytes(4, "big") + b"\x00" * 10)
                sock.sendall(conn.data_to_send())

            def done(seen: list[object]) -> bool:
                return any(isinstance(e, StreamReset) for e in seen)
            for event in _events_until(sock, conn, done):
                if isinstance(event, (ResponseReceived, TrailersReceived)):
                    headers = dict(event.headers or [])
                    statuses.append(headers.get(b"grpc-status", b"").decode()
                                    + ":" + str(event.stream_id))
        return statuses

    statuses, guard = _with_server(limits, attack)
    assert statuses == ["8:5"]  # the third stream (id 5) only
    assert guard.refused_messages == 1


def test_declared_huge_is_refused_and_the_budget_is_returned() -> None:
    limits = TransportLimits()

    def attack(port: int) -> list[str | None]:
        return [declare_huge(port, path=HEALTH, max_send=32 * MiB).grpc_status
                for _ in range(3)]

    statuses, guard = _with_server(limits, attack)
    assert statuses == ["8", "8", "8"]
    assert guard.in_flight == 0 and guard.refused_messages == 3


def test_connections_per_address_are_capped() -> None:
    limits = TransportLimits(max_connections_per_address=2)

    def attack(port: int) -> list[object]:
        kept = [open_h2(port) for _ in range(2)]
        sock, conn = open_h2(port)
        with sock:
            seen = _events_until(sock, conn, lambda seen: "closed" in seen)
        for s, _ in kept:
            s.close()
        return seen

    seen, guard = _with_server(limits, attack)
    goaways = [e for e in seen if isinstance(e, ConnectionTerminated)]
    assert [g.error_code for g in goaways] == [ErrorCodes.ENHANCE_YOUR_CALM]
    assert guard.refused_connections == 1


def test_idle_connections_are_closed() -> None:
    limits = TransportLimits(idle_timeout=0.3)

    def attack(port: int) -> list[object]:
        sock, conn = open_h2(port)
        with sock:
            return _events_until(sock, conn, lambda seen: "closed" in seen)

    seen, guard = _with_server(limits, attack)
    assert any(isinstance(e, ConnectionTerminated) and e.error_code == ErrorCodes.NO_ERROR
               for e in seen)
    assert guard.idle_closed == 1 and guard.total_connections == 0


def test_a_reply_declared_huge_cancels_the_call_at_its_prefix() -> None:
    """What a node calling a hostile peer's Sync sees (peer.net.mesh uses GuardedChannel)."""
    sent = 0

    async def huge_reply(stream: Any) -> None:
        nonlocal sent
        await stream.recv_message()
        await stream.send_initial_metadata()
        raw = stream._stream  # below grpclib's codec: a prefix it would never write
        await raw.send_data(b"\x00" + (2**31 - 1).to_bytes(4, "big"))
        chunk = b"\x00" * 16384
        while sent < 256 * MiB:
            try:
                # Once the caller has cancelled, no window comes back: stop there.
                await asyncio.wait_for(raw.send_data(chunk), 2)
            except (TimeoutError, StreamTerminatedError, ConnectionError):
                return
            sent += len(chunk)

    class Hostile:
        def __mapping__(self) -> dict[str, grpclib.const.Handler]:
            return {"/auction.v1.Peer/Sync": grpclib.const.Handler(
                huge_reply, Cardinality.UNARY_STREAM, SyncRequest, SyncReply)}

    async def main() -> type[BaseException]:
        server = GrpclibServer([Hostile()], codec=LimitedCodec())
        await server.start("127.0.0.1", 0)
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        channel = GuardedChannel("127.0.0.1", port, codec=LimitedCodec())
        try:
            async with asyncio.timeout(20):
                async for _ in PeerStub(channel).sync(SyncRequest()):
                    pass
        except Exception as exc:
            return type(exc)
        finally:
            channel.close()
            server.close()
            async with asyncio.timeout(10):
                await server.wait_closed()
        raise AssertionError("the huge reply was accepted")

    assert asyncio.run(main()) is StreamTerminatedError
    # The caller's windows (4 MiB, grpclib's client default) bound what got through.
    assert sent <= 8 * MiB, sent
