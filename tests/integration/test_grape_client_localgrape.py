"""GrapeClient against an in-process localgrape (a lone grape on 127.0.0.1, port 0).

localgrape's API as planned: ``bound = await nursery.start(serve, GrapeConfig())``,
``bound.url == "http://127.0.0.1:<port>"``. A lone grape answers announces with
``"No nodes to query"`` (grape-http-api.md §3), which the client reports as 0,
and still finds the record on lookup.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from grape_client import GrapeClient, GrapeError, GrapeRecord, announce_forever

# An absolute limit per test: a hang is a failure, not a stuck CI job.
TEST_DEADLINE = 10.0


@asynccontextmanager
async def lone_grape() -> AsyncIterator[GrapeClient]:
    """A localgrape serving on a free port, and a client connected to it."""
    # Imported here, not at module level: until localgrape exports serve, this
    # fails only these tests instead of stopping collection of the whole suite.
    from localgrape import GrapeConfig, serve

    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve, GrapeConfig())
        assert bound.url.startswith("http://127.0.0.1:")
        async with GrapeClient(bound.url) as client:
            yield client
        nursery.cancel_scope.cancel()


def nonce_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


async def test_lone_grape_announce_is_zero_and_lookup_finds_it() -> None:
    name = nonce_name("gc-local")
    with trio.fail_after(TEST_DEADLINE):
        async with lone_grape() as grape:
            assert await grape.lookup(name) == []
            assert await grape.announce(name, 5001) == 0
            assert await grape.lookup(name) == ["127.0.0.1:5001"]
            assert await grape.announce(name, 5001) == 0  # no duplicate
            assert await grape.announce(name, 5002) == 0
            assert sorted(await grape.lookup(name)) == ["127.0.0.1:5001", "127.0.0.1:5002"]

            with pytest.raises(GrapeError) as info:
                await grape.lookup("")
            assert (info.value.code, info.value.status) == ("ERR_GRAPE_LOOKUP", 200)


async def test_lone_grape_put_then_get() -> None:
    with trio.fail_after(TEST_DEADLINE):
        async with lone_grape() as grape:
            # "No nodes to query" or the hash itself: put returns the hash either way.
            digest = await grape.put("hello")
            assert digest == "e28910ea0adb94dd45ced75fbff3e135c01bc437"
            record = await grape.get(digest)
            assert isinstance(record, GrapeRecord)
            assert (record.v, record.token) == ("hello", None)
            assert await grape.get("00" * 20) is None


async def test_announce_forever_against_lone_grape() -> None:
    name = nonce_name("gc-forever")
    with trio.fail_after(TEST_DEADLINE):
        async with lone_grape() as grape, trio.open_nursery() as nursery:
            await nursery.start(partial(announce_forever, grape, name, 5003, interval=0.05))
            # started() comes after the first announce, so the record is there already.
            assert await grape.lookup(name) == ["127.0.0.1:5003"]
            nursery.cancel_scope.cancel()
