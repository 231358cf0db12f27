"""GrapeClient against scripted Grape replies (httpx.MockTransport), under trio and asyncio.

The replies are the ones grape-http-api.md records for the real grenache-grape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from grape_client import (
    GrapeClient,
    GrapeClientError,
    GrapeError,
    GrapeRecord,
    GrapeUnavailable,
)
from tests.support import free_port

A = "http://127.0.0.1:30001"
B = "http://127.0.0.1:40001"
HELLO_HASH = "e28910ea0adb94dd45ced75fbff3e135c01bc437"  # sha1(b"5:hello"), §5


def grape_reply(status: int, body: str | bytes) -> httpx.Response:
    """A response shaped like Grape's: no Content-Type, just a body (§1)."""
    return httpx.Response(status, content=body.encode() if isinstance(body, str) else body)


@dataclass
class ScriptedGrape:
    """A fake grape: answers each request with ``reply(path, data)``; records requests."""

    reply: Callable[[str, object], httpx.Response]
    down: set[str] = field(default_factory=set)  # hosts ("127.0.0.1:30001") refusing connections
    requests: list[httpx.Request] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if f"{request.url.host}:{request.url.port}" in self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        payload = json.loads(request.content)
        return self.reply(request.url.path, payload["data"])

    def client(self, urls: str | list[str] = A) -> GrapeClient:
        return GrapeClient(urls, transport=httpx.MockTransport(self.handler))

    @property
    def hosts(self) -> list[str]:
        return [f"http://{r.url.host}:{r.url.port}" for r in self.requests]


def always(status: int, body: str | bytes) -> ScriptedGrape:
    return ScriptedGrape(lambda _path, _data: grape_reply(status, body))


# --- the happy paths -------------------------------------------------------------------


async def test_requests_are_posts_with_rid_and_data() -> None:
    grape = always(200, "1")
    async with grape.client(A + "/") as client:  # a trailing slash is tolerated
        await client.announce("svc", 5001)
        await client.announce("svc", 5001)
    first, second = grape.requests
    assert first.method == "POST"
    assert str(first.url) == A + "/announce"
    body = json.loads(first.content)
    assert set(body) == {"rid", "data"}
    assert body["data"] == ["svc", 5001]
    assert uuid.UUID(body["rid"]).version == 4
    assert json.loads(second.content)["rid"] != body["rid"]


async def test_each_endpoint_posts_its_data() -> None:
    def reply(path: str, data: object) -> httpx.Response:
        return {
            "/announce": grape_reply(200, "1"),
            "/lookup": grape_reply(200, '["127.0.0.1:5001"]'),
            "/put": grape_reply(200, json.dumps(HELLO_HASH)),
            "/get": grape_reply(200, '{"id":"' + "ab" * 20 + '","token":null,"v":"hello"}'),
        }[path]

    grape = ScriptedGrape(reply)
    async with grape.client() as client:
        assert await client.announce("svc", 5001) == 1
        assert await client.lookup("svc") == ["127.0.0.1:5001"]
        assert await client.put("hello") == HELLO_HASH
        assert await client.get(HELLO_HASH.upper()) == GrapeRecord(
            id="ab" * 20, token=None, v="hello"
        )
    sent = [(r.url.path, json.loads(r.content)["data"]) for r in grape.requests]
    assert sent == [
        ("/announce", ["svc", 5001]),
        ("/lookup", "svc"),
        ("/put", {"v": "hello"}),
        ("/get", HELLO_HASH.upper()),
    ]


async def test_get_miss_is_an_empty_body() -> None:
    async with always(200, b"").client() as client:
        assert await client.get("00" * 20) is None


async def test_get_remote_hit_and_mutable_fields() -> None:
    remote = '{"id":"' + "cd" * 20 + '","token":"' + "ef" * 20 + '","v":"hello"}'
    async with always(200, remote).client() as client:
        assert await client.get(HELLO_HASH) == GrapeRecord(
            id="cd" * 20, token="ef" * 20, v="hello"
        )
    # Key order of a remote mutable answer (§5); unknown keys are ignored.
    mutable = json.dumps(
        {"id": "01" * 20, "k": "22" * 32, "seq": 3, "sig": "33" * 64, "token": None,
         "v": "x", "salt": "s", "future": [1]}
    )
    async with always(200, mutable).client() as client:
        record = await client.get(HELLO_HASH)
    assert record == GrapeRecord(
        id="01" * 20, token=None, v="x", seq=3, salt="s", k="22" * 32, sig="33" * 64
    )


async def test_lookup_of_unknown_name_is_empty() -> None:
    async with always(200, "[]").client() as client:
        assert await client.lookup("nobody") == []


# --- lone grapes: "No nodes to query" ----------------------------------------------------


async def test_no_nodes_to_query_announce_returns_zero(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="grape_client")
    async with always(200, '"No nodes to query"').client() as client:
        assert await client.announce("svc", 5001) == 0
    [record] = caplog.records
    assert record.levelno == logging.DEBUG
    assert "stored only on" in record.getMessage()


async def test_no_nodes_to_query_put_returns_local_hash() -> None:
    async with always(200, '"No nodes to query"').client() as client:
        assert await client.put("hello") == HELLO_HASH
        # Values from §5: UTF-8 length in the bencoding, and the empty string.
        assert await client.put("h\u00e9llo \u2713") == "970afbb4d6997f875bc318f63bb5c148e7abfb25"
        assert await client.put("") == "b44b82a4bc6c35f6ad5e9fceefef9509c17fba74"


# --- grape errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "status", "body", "code"),
    [
        ("lookup", 200, '"ERR_GRAPE_LOOKUP"', "ERR_GRAPE_LOOKUP"),
        ("lookup", 500, "ERR_GRAPE_PAYLOAD_INVALID", "ERR_GRAPE_PAYLOAD_INVALID"),
        ("lookup", 413, "ERR_GRAPE_PAYLOAD_SIZE", "ERR_GRAPE_PAYLOAD_SIZE"),
        ("lookup", 200, '"ERR_REQ_NOTFOUND"', "ERR_REQ_NOTFOUND"),
        ("announce", 200, '"All queries failed"', "All queries failed"),
        ("announce", 200, '"ERR_GRAPE_SERVICE_PORT"', "ERR_GRAPE_SERVICE_PORT"),
        ("announce", 500, 'The value of "value" is out of range. It must be >= 0 and <= 65535. '
         "Received 70000",
         'The value of "value" is out of range. It must be >= 0 and <= 65535. Received 70000'),
        ("put", 200, '"v must be less than 1000 bytes in put()"',
         "v must be less than 1000 bytes in put()"),
        ("put", 200, '"All queries failed"', "All queries failed"),
        ("put", 302, '"302 sequence number less than current"',
         "302 sequence number less than current"),
        ("get", 200, '"ERR_GRAPE_GENERIC"', "ERR_GRAPE_GENERIC"),
        ("get", 500, "Cannot read properties of null (reading 'salt')",
         "Cannot read properties of null (reading 'salt')"),
        # Unexpected shapes: the body text is the code.
        ("lookup", 200, '{"a":1}', '{"a":1}'),
        ("lookup", 200, '["a",1]', '["a",1]'),
        ("announce", 200, "true", "true"),
        ("announce", 200, "-1", "-1"),
        ("announce", 200, "1.5", "1.5"),
        ("announce", 200, "", ""),
        ("put", 200, '"not-a-hash"', "not-a-hash"),
        ("put", 200, "5", "5"),
        ("get", 200, '{"id":"x"}', '{"id":"x"}'),
        ("get", 200, '{"id":"x","v":5,"token":null}', '{"id":"x","v":5,"token":null}'),
        ("get", 200, "<html>", "<html>"),
        ("lookup", 502, "<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        ("lookup", 200, b"\xff[", "\ufffd["),
        ("lookup", 200, "[" * 100_000, "[" * 100_000),  # RecursionError in json, not a crash
    ],
)
async def test_grape_errors_carry_code_and_status(
    endpoint: str, status: int, body: str | bytes, code: str
) -> None:
    calls = {
        "announce": lambda c: c.announce("svc", 5001),
        "lookup": lambda c: c.lookup("svc"),
        "put": lambda c: c.put("hello"),
        "get": lambda c: c.get(HELLO_HASH),
    }
    async with always(status, body).client() as client:
        with pytest.raises(GrapeError) as info:
            await calls[endpoint](client)
    assert info.value.code == code
    assert info.value.status == status
    assert info.value.endpoint == endpoint
    assert info.value.url == A
    assert f"/{endpoint} on {A} answered {status}" in str(info.value)


async def test_grape_error_is_not_a_reason_to_fail_over() -> None:
    grape = always(200, '"ERR_GRAPE_LOOKUP"')
    async with grape.client([A, B]) as client:
        with pytest.raises(GrapeError):
            await client.lookup("")
        assert client.url == A
    assert grape.hosts == [A]


# --- failover and unavailability ------------------------------------------------------------


async def test_failover_to_next_url_and_stick_with_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="grape_client")
    grape = always(200, "[]")
    grape.down.add("127.0.0.1:30001")
    async with grape.client([A, B]) as client:
        assert await client.lookup("svc") == []
        assert client.url == B
        assert await client.lookup("svc") == []
        # B goes down and A comes back: round the list from B.
        grape.down = {"127.0.0.1:40001"}
        assert await client.lookup("svc") == []
        assert client.url == A
    assert grape.hosts == [A, B, B, B, A]
    assert [r.getMessage() for r in caplog.records] == [
        f"grape {A} unreachable, switched to {B}",
        f"grape {B} unreachable, switched to {A}",
    ]


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.ReadTimeout("slow"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.PoolTimeout("busy"),
    ],
)
async def test_no_grape_answers(exc: httpx.TransportError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    async with GrapeClient([A, B], transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(GrapeUnavailable) as info:
            await client.lookup("svc")
    assert info.value.__cause__ is exc
    assert A in str(info.value)
    assert B in str(info.value)
    assert type(exc).__name__ in str(info.value)
    assert isinstance(info.value, GrapeClientError)
    assert not isinstance(info.value, httpx.HTTPError)


async def test_real_connection_refused_is_unavailable() -> None:
    """The default transport, against a loopback port nobody listens on."""
    async with GrapeClient(f"http://127.0.0.1:{free_port()}", timeout=1.0) as client:
        with pytest.raises(GrapeUnavailable) as info:
            await client.lookup("svc")
    assert isinstance(info.value.__cause__, httpx.ConnectError)


# --- argument checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "port"),
    [("", 5001), ("svc", 0), ("svc", -1), ("svc", 65536), ("svc", True), ("svc", 5001.0)],
)
async def test_announce_refuses_inputs_that_crash_or_poison_grape(name: str, port: int) -> None:
    grape = always(200, "1")
    async with grape.client() as client:
        with pytest.raises(ValueError):
            await client.announce(name, port)
    assert grape.requests == []


@pytest.mark.parametrize("digest", ["", "zzzz", "00" * 19, "00" * 21, "g" * 40, " " + "0" * 39])
async def test_get_refuses_non_hex_hashes(digest: str) -> None:
    grape = always(200, b"")
    async with grape.client() as client:
        with pytest.raises(ValueError):
            await client.get(digest)
    assert grape.requests == []


@pytest.mark.parametrize(
    "urls", [[], "", "127.0.0.1:30001", "ftp://127.0.0.1/", "http://", [A, "nope"]]
)
def test_bad_urls_are_refused(urls: str | list[str]) -> None:
    with pytest.raises(ValueError):
        GrapeClient(urls)


def test_bad_timeout_is_refused() -> None:
    with pytest.raises(ValueError):
        GrapeClient(A, timeout=0)


def test_urls_are_kept_in_order() -> None:
    client = GrapeClient([A + "/", B])
    assert client.urls == (A, B)
    assert client.url == A


# --- lifecycle ---------------------------------------------------------------------------------


async def test_closed_client_refuses_calls_and_reopening() -> None:
    grape = always(200, "[]")
    client = grape.client()
    async with client:
        assert not client.is_closed
        with pytest.raises(RuntimeError, match="more than once"):
            await client.__aenter__()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.lookup("svc")
    with pytest.raises(RuntimeError, match="closed"):
        async with client:
            pass
    await client.aclose()  # idempotent
    assert len(grape.requests) == 0


async def test_use_without_async_with_then_aclose() -> None:
    client = always(200, "[]").client()
    assert await client.lookup("svc") == []
    with pytest.raises(RuntimeError, match="more than once"):
        await client.__aenter__()
    await client.aclose()
    assert client.is_closed


# --- asyncio -------------------------------------------------------------------------------------


def test_works_under_asyncio() -> None:
    grape = always(200, '["127.0.0.1:5001"]')

    async def main() -> list[str]:
        async with grape.client() as client:
            return await client.lookup("svc")

    assert asyncio.run(main()) == ["127.0.0.1:5001"]


def test_failover_and_errors_under_asyncio() -> None:
    grape = always(200, '"ERR_GRAPE_LOOKUP"')
    grape.down.add("127.0.0.1:30001")

    async def main() -> None:
        async with grape.client([A, B]) as client:
            with pytest.raises(GrapeError, match="ERR_GRAPE_LOOKUP"):
                await client.lookup("")
            assert client.url == B
        grape.down.add("127.0.0.1:40001")
        async with grape.client([A, B]) as client:
            with pytest.raises(GrapeUnavailable):
                await client.lookup("svc")

    asyncio.run(main())


def test_real_connection_refused_under_asyncio() -> None:
    async def main() -> None:
        async with GrapeClient(f"http://127.0.0.1:{free_port()}", timeout=1.0) as client:
            with pytest.raises(GrapeUnavailable):
                await client.announce("svc", 5001)

    asyncio.run(main())
