"""Two embedded localgrapes on loopback UDP (the demo's setup), and hostile UDP input.

The first grape binds port 0 and knows nobody; the second bootstraps to the
first's bound ``dht_port``, which teaches the first about the second (k-rpc
``addNode`` on every query), exactly as with real grapes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import bencode2
import httpx
import pytest
import trio
import trio.testing

from localgrape import BoundGrape, GrapeConfig, _network, serve
from localgrape.krpc import (
    DropReason,
    GetPeers,
    Ping,
    PutItem,
    QueryMessage,
    ResponseMessage,
    decode,
    encode,
)

DEADLINE = 10.0


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[BoundGrape, BoundGrape, httpx.AsyncClient]]:
    async with trio.open_nursery() as nursery:
        first = await nursery.start(serve, GrapeConfig())
        second = await nursery.start(serve, GrapeConfig(
            bootstrap=(f"127.0.0.1:{first.dht_port}",)))
        assert first.dht is not None and second.dht is not None
        await second.dht.wait_ready()
        # The first grape pings the second (an unknown querier) before adding it.
        while not len(first.dht.node.routing):
            await trio.testing.wait_all_tasks_blocked()
        async with httpx.AsyncClient(timeout=DEADLINE) as client:
            yield first, second, client
        nursery.cancel_scope.cancel()


async def call(client: httpx.AsyncClient, grape: BoundGrape, path: str,
               data: object) -> object:
    r = await client.post(grape.url + path, json={"rid": "t", "data": data})
    assert r.status_code == 200, r.text
    return r.json() if r.content else None


async def test_embedded_pair_announce_lookup_put_get_across() -> None:
    with trio.fail_after(DEADLINE):
        async with pair() as (a, b, client):
            assert a.dht is not None and len(a.dht.node.routing) == 1  # learnt b
            assert await call(client, a, "/announce", ["svc", 5001]) == 1
            assert await call(client, b, "/lookup", "svc") == ["127.0.0.1:5001"]
            assert await call(client, b, "/announce", ["svc", 0]) == 1
            assert sorted(await call(client, a, "/lookup", "svc")) == sorted(  # type: ignore
                ["127.0.0.1:5001", f"127.0.0.1:{b.dht_port}"])
            target = await call(client, b, "/put", {"v": "hello"})
            assert target == "e28910ea0adb94dd45ced75fbff3e135c01bc437"
            hit = await call(client, a, "/get", target)
            assert hit == {"id": a.dht.node_id_hex, "token": None, "v": "hello"}
            remote = await call(client, a, "/get", {"hash": target, "cache": False})
            assert isinstance(remote, dict) and remote["v"] == "hello"
            assert b.dht is not None and remote["id"] == b.dht.node_id_hex
            assert await call(client, a, "/get", "00" * 20) is None


async def _answered_ping(target: tuple[str, int]) -> None:
    ping = encode(QueryMessage(b"pp", Ping(b"\x08" * 20), read_only=True))
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        while True:
            await sock.sendto(ping, target)
            with trio.move_on_after(0.5):
                while True:
                    data, _ = await sock.recvfrom(65536)
                    answer = decode(data)
                    if isinstance(answer, ResponseMessage) and answer.transaction_id == b"pp":
                        return


async def test_hostile_udp_is_dropped_counted_and_never_stalls_http(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A per-address limit of 200/s (burst 400) instead of 1000/s (burst 2000): the
    # flood below then exceeds it however slowly a loaded machine reads it, while
    # the peer grape's few datagrams per HTTP call stay far below it.
    monkeypatch.setattr(_network, "PEER_RATE", 200.0)
    monkeypatch.setattr(_network, "PEER_BURST", 400.0)
    with trio.fail_after(DEADLINE):
        async with pair() as (a, b, client):
            assert a.dht is not None
            node = a.dht.node
            before = node.statistics()
            target = ("127.0.0.1", a.dht_port)
            get_peers = encode(QueryMessage(b"tt", GetPeers(b"\x07" * 20, b"k")))
            junk = [b"", b"garbage", b"d1:y1:qe", b"i5e", b"l" * 5000,
                    bencode2.bencode({b"t": 5, b"y": b"q", b"q": b"ping", b"a": {}}),
                    bencode2.bencode({b"t": b"x", b"y": b"q", b"q": b"ping",
                                      b"a": {b"id": b"short"}}),
                    encode(QueryMessage(b"tt", PutItem(b"\x07" * 20, b"forged", b"v"))),
                    b"d" + b"x" * 60000]  # larger than any KRPC datagram

            flooding = trio.Event()
            stop = threading.Event()

            def flood() -> int:
                sent = 0
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                    for data in junk:
                        s.sendto(data, target)
                    trio.from_thread.run_sync(flooding.set)
                    # One address, far above its rate limit, until the HTTP calls
                    # below are done. Paced (the sleep is pacing, not synchronization)
                    # below what the node can read: a flood that fills the kernel's
                    # socket buffer (net.core.rmem_max, often 208 KiB) loses legitimate
                    # answers too, for any UDP DHT node.
                    while sent < 6000 or not stop.is_set():
                        for _ in range(20):
                            s.sendto(get_peers, target)
                        sent += 20
                        time.sleep(0.004)
                return sent

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, flood)
                await flooding.wait()
                # HTTP keeps answering, correctly, while the flood lasts.
                try:
                    for i in range(20):
                        assert await call(client, a, "/announce", [f"svc{i}", 5001]) == 1
                        assert await call(client, b, "/lookup", f"svc{i}") == [
                            "127.0.0.1:5001"]
                finally:
                    stop.set()
            # Everything the flood sent has been read once a ping sent after it is
            # answered: the node reads its one socket in order. The ping is retried
            # because the global rate limit may still refuse it for a moment.
            await _answered_ping(target)
            after = node.statistics()
            dropped = {k: after.dropped.get(k, 0) - before.dropped.get(k, 0)
                       for k in after.dropped}
            assert dropped.get(DropReason.RATE_LIMITED.value, 0) > 0
            assert dropped.get(DropReason.BAD_TOKEN.value, 0) == 1
            assert dropped.get(DropReason.TOO_LARGE.value, 0) >= 1
            assert dropped.get(DropReason.BAD_BENCODE.value, 0) >= 2
            # And the grape still works afterwards.
            assert await call(client, a, "/announce", ["after", 5001]) == 1
            assert await call(client, b, "/lookup", "after") == ["127.0.0.1:5001"]
