"""A localgrape and a real grenache-grape 1.0.0 bootstrapped to each other.

The localgrape is embedded (``serve``, port 0) and bootstraps to the real
grape's DHT port; the real grape is started with ``--bn`` pointing at the
localgrape. Whichever side starts the announce or put, the other side's HTTP
API sees it at once, and announce counts are those of a two-node network (1).
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing

from localgrape import BoundGrape, GrapeConfig, serve
from tests.support import (
    free_port,
    free_tcp_udp_port,
    grape_answers,
    require_grape,
    unique,
    wait_until,
)

pytestmark = pytest.mark.interop

DEADLINE = 20.0


@pytest.fixture
def grape_bin() -> str:
    # A plain fixture: a skip raised inside an async (pytest-trio) fixture loses its
    # reason in the summary.
    return require_grape()


@pytest.fixture
async def mixed(grape_bin: str) -> AsyncIterator[tuple[BoundGrape, str, httpx.AsyncClient]]:
    dht_port, api_port = free_tcp_udp_port(), free_port()
    url = f"http://127.0.0.1:{api_port}"
    async with trio.open_nursery() as nursery:
        local = await nursery.start(serve, GrapeConfig(bootstrap=(f"127.0.0.1:{dht_port}",)))
        argv = [grape_bin, "--dp", str(dht_port), "--aph", str(api_port), "-b", "127.0.0.1",
                "--bn", f"127.0.0.1:{local.dht_port}"]
        proc = await trio.to_thread.run_sync(lambda: subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            await trio.to_thread.run_sync(
                lambda: wait_until(lambda: grape_answers(url) or proc.poll() is not None,
                                   timeout=20, what="real grape"))
            assert proc.poll() is None, "the real grape exited"
            assert local.dht is not None
            # The grape bootstrapped to us; we ping it before adding it.
            with trio.fail_after(5):
                while not len(local.dht.node.routing):
                    await trio.testing.wait_all_tasks_blocked()
            async with httpx.AsyncClient(timeout=DEADLINE) as client:
                yield local, url, client
        finally:
            proc.terminate()
            await trio.to_thread.run_sync(proc.wait)
            nursery.cancel_scope.cancel()


async def post(client: httpx.AsyncClient, url: str, path: str, data: object) -> object:
    r = await client.post(url + path, json={"rid": "mixed", "data": data})
    assert r.status_code == 200, r.text
    return r.json() if r.content else None


async def test_announce_on_either_lookup_on_the_other(
        mixed: tuple[BoundGrape, str, httpx.AsyncClient]) -> None:
    local, real, client = mixed
    with trio.fail_after(DEADLINE):
        ours, theirs = unique("mixed-local"), unique("mixed-real")
        assert await post(client, local.url, "/announce", [ours, 5401]) == 1
        assert await post(client, real, "/lookup", ours) == ["127.0.0.1:5401"]
        assert await post(client, real, "/announce", [theirs, 5402]) == 1
        assert await post(client, local.url, "/lookup", theirs) == ["127.0.0.1:5402"]
        # Port 0 announces the announcing grape's own DHT port.
        assert await post(client, local.url, "/announce", [ours + "-0", 0]) == 1
        assert await post(client, real, "/lookup", ours + "-0") == [
            f"127.0.0.1:{local.dht_port}"]


async def test_put_on_either_get_on_the_other(
        mixed: tuple[BoundGrape, str, httpx.AsyncClient]) -> None:
    local, real, client = mixed
    assert local.dht is not None
    with trio.fail_after(DEADLINE):
        ours, theirs = unique("put-local"), unique("put-real")
        ours_hash = await post(client, local.url, "/put", {"v": ours})
        hit = await post(client, real, "/get", ours_hash)
        assert isinstance(hit, dict) and (hit["token"], hit["v"]) == (None, ours)
        remote = await post(client, real, "/get", {"hash": ours_hash, "cache": False})
        assert remote == {"id": local.dht.node_id_hex, "token": remote["token"],  # type: ignore
                          "v": ours}
        theirs_hash = await post(client, real, "/put", {"v": theirs})
        assert await post(client, local.url, "/get", theirs_hash) == {
            "id": local.dht.node_id_hex, "token": None, "v": theirs}
        remote = await post(client, local.url, "/get", {"hash": theirs_hash, "cache": False})
        assert isinstance(remote, dict) and remote["v"] == theirs
        assert isinstance(remote["token"], str) and len(remote["token"]) == 40
        # Values over 1000 bytes stay on the putting node; the other asks for them.
        big = "\u00e9" * 501
        big_hash = await post(client, real, "/put", {"v": big})
        assert big_hash == "All queries failed"
        assert await post(client, local.url, "/put", {"v": big}) == "All queries failed"
