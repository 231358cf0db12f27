"""A localgrape Dht in a network with a real grenache-grape 1.0.0: the two-node case.

The real grape runs with ``--bn ''`` (it knows nobody); our Dht bootstraps to
it, which teaches the grape our node (k-rpc ``addNode`` on every query). So the
network is the two-node network of grape-http-api.md, and an announce from
either side must count 1. Only loopback addresses are used. HTTP calls run in a
thread so that our node keeps answering the grape's UDP queries meanwhile.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import trio

from localgrape.krpc import NO_NODES_TO_QUERY, Dht, immutable_target
from tests.support import (
    GrapeProc,
    grape_answers,
    grape_post,
    require_grape,
    running_grapes,
    unique,
    wait_until,
)

pytestmark = pytest.mark.interop


@pytest.fixture
def grape() -> Iterator[GrapeProc]:
    with running_grapes([require_grape()], count=1) as procs:
        yield procs[0]


@pytest.fixture
async def dht(grape: GrapeProc) -> AsyncIterator[Dht]:
    ours = Dht(bootstrap=[("127.0.0.1", grape.dht_port)], bootstrap_retry=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(ours.run)
        with trio.fail_after(5):
            await ours.wait_ready()
        assert len(ours.node.routing) == 1  # the grape
        yield ours
        nursery.cancel_scope.cancel()


async def http(grape: GrapeProc, path: str, data: Any) -> httpx.Response:
    return await grape_post(grape, path, data, rid="mixed")


async def test_our_announce_is_seen_by_grape_lookup(grape: GrapeProc, dht: Dht) -> None:
    name = unique("mixed-ours")
    with trio.fail_after(5):
        # What a real grape answers in a two-node network (section 3).
        assert await dht.announce(name.encode(), 5301) == 1
    assert (await http(grape, "/lookup", name)).json() == ["127.0.0.1:5301"]
    with trio.fail_after(5):
        assert await dht.announce(name.encode(), 0) == 1  # implied_port: our UDP port
    assert sorted((await http(grape, "/lookup", name)).json()) == sorted(
        ["127.0.0.1:5301", f"127.0.0.1:{dht.address[1]}"])


async def test_grape_announce_is_seen_by_our_lookup(grape: GrapeProc, dht: Dht) -> None:
    name = unique("mixed-theirs")
    r = await http(grape, "/announce", [name, 5302])
    assert (r.status_code, r.text) == (200, "1")  # the grape counts us
    with trio.fail_after(5):
        assert await dht.lookup(name.encode()) == ["127.0.0.1:5302"]
        assert await dht.lookup(unique("mixed-none").encode()) == []


async def test_put_and_get_both_ways(grape: GrapeProc, dht: Dht) -> None:
    grape_id = next(iter(dht.node.routing)).id
    ours = unique("mixed-put-ours")
    with trio.fail_after(5):
        assert await dht.put(ours.encode()) == 1
    target = immutable_target(ours.encode())
    body = (await http(grape, "/get", target.hex())).json()
    # The grape stored our put, so it answers from its own values.
    assert body == {"id": grape_id.hex(), "token": None, "v": ours}

    theirs = unique("mixed-put-theirs")
    r = await http(grape, "/put", {"v": theirs})
    their_target = immutable_target(theirs.encode())
    assert r.json() == their_target.hex()
    with trio.fail_after(5):
        local = await dht.get(their_target)  # the grape put it to us too
        assert local is not None and local.local and local.v == theirs.encode()
        remote = await dht.get(their_target, cache=False)  # ask the network
    assert remote is not None and not remote.local
    assert (remote.id, remote.v) == (grape_id, theirs.encode())
    assert remote.token is not None and len(remote.token) == 20
    assert await dht.get(immutable_target(b"never put"), cache=False) is None


async def test_grape_restart_costs_one_timeout_and_is_found_again(grape: GrapeProc,
                                                                  dht: Dht) -> None:
    argv = [require_grape(), "--dp", str(grape.dht_port), "--aph", str(grape.api_port),
            "--bn", "", "-b", "127.0.0.1"]
    grape.proc.terminate()
    grape.proc.wait(timeout=5)
    if grape.proc.stderr is not None:
        grape.proc.stderr.close()
    name = unique("mixed-restart")
    t0 = trio.current_time()
    with trio.fail_after(5):
        assert await dht.announce(name.encode(), 5303) == NO_NODES_TO_QUERY
    assert trio.current_time() - t0 < dht.node.query_timeout + 0.5  # real grape: 4.7 s
    t1 = trio.current_time()
    with trio.fail_after(5):
        assert await dht.announce(name.encode(), 5303) == NO_NODES_TO_QUERY
        assert await dht.lookup(name.encode()) == ["127.0.0.1:5303"]
    assert trio.current_time() - t1 < 0.5  # no second timeout (real grape: 2.3 s)

    def restart() -> None:
        # Same ports, new DHT id; running_grapes terminates it at the end.
        grape.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        wait_until(lambda: grape_answers(grape.url), timeout=20, what="restarted grape")

    await trio.to_thread.run_sync(restart)
    # The restarted grape knows nobody: only our background retry of the
    # bootstrap address (every 0.5 s here) can find it. Poll an external
    # process's effect against a deadline.
    with trio.fail_after(10):
        for _ in range(100):
            if len(dht.node.routing):
                break
            await trio.sleep(0.1)
        assert await dht.announce(name.encode(), 5303) == 1
    assert (await http(grape, "/lookup", name)).json() == ["127.0.0.1:5303"]
