"""GrapeClient against two real grenache-grape processes (the real_grapes fixture).

Only inputs that real Grape survives are sent (grape-http-api.md §7): no
out-of-range ports, no empty announce names, no non-hex get hashes. The client
refuses those itself.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from grape_client import GrapeClient, GrapeError, GrapeRecord
from tests.support import GrapeProc, free_port

pytestmark = pytest.mark.interop


def nonce_name(prefix: str) -> str:
    """A service name no earlier run can have announced (§9)."""
    return f"{prefix}-{uuid.uuid4().hex}"


async def test_client_against_two_real_grapes(real_grapes: list[GrapeProc]) -> None:
    a, b = real_grapes
    name = nonce_name("gc-interop")
    async with GrapeClient(a.url) as on_a, GrapeClient(b.url) as on_b:
        assert await on_a.announce(name, 5001) == 1  # the one other node stored it
        assert await on_b.lookup(name) == ["127.0.0.1:5001"]
        assert await on_a.lookup(name) == ["127.0.0.1:5001"]
        assert await on_b.lookup(nonce_name("gc-unknown")) == []

        value = f"auction record {uuid.uuid4()}"
        digest = await on_a.put(value)
        assert len(digest) == 40
        for client in (on_a, on_b):
            record = await client.get(digest)
            assert isinstance(record, GrapeRecord)
            assert record.v == value
            assert len(record.id) == 40
        assert await on_b.get("00" * 20) is None  # §5: miss is an empty body

        with pytest.raises(GrapeError) as info:
            await on_b.lookup("")
        assert (info.value.code, info.value.status) == ("ERR_GRAPE_LOOKUP", 200)

        with pytest.raises(GrapeError) as info:
            await on_a.put("a" * 1000)
        assert info.value.code == "v must be less than 1000 bytes in put()"

    # A dead URL first: the call fails over to A, and A stays the current URL.
    dead = f"http://127.0.0.1:{free_port()}"
    name = nonce_name("gc-failover")
    async with GrapeClient([dead, a.url]) as client:
        assert await client.announce(name, 5002) == 1
        assert client.url == a.url
        assert await client.lookup(name) == ["127.0.0.1:5002"]
    async with GrapeClient(b.url) as on_b:
        assert await on_b.lookup(name) == ["127.0.0.1:5002"]


def test_real_grapes_under_asyncio(real_grapes: list[GrapeProc]) -> None:
    a, b = real_grapes
    name = nonce_name("gc-asyncio")

    async def main() -> list[str]:
        async with GrapeClient(a.url) as on_a, GrapeClient(b.url) as on_b:
            assert await on_a.announce(name, 5003) == 1
            return await on_b.lookup(name)

    assert asyncio.run(main()) == ["127.0.0.1:5003"]
