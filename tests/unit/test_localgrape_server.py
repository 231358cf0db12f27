"""The HTTP layer over trio.testing memory streams: framing, keep-alive, bad clients."""

from __future__ import annotations

import re

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from localgrape import LocalDht, Timeouts
from localgrape._server import GrapeApp, serve_connection

DATE = re.compile(rb"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")


def app(*, limit: int | None = None, timeouts: Timeouts | None = None) -> GrapeApp:
    return GrapeApp(LocalDht(dht_port=20001, bind="127.0.0.1"), max_payload_size=limit,
                    timeouts=timeouts)


def post(body: bytes, path: bytes = b"/lookup", extra: bytes = b"") -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s"
            % (path, extra, len(body), body))


def ok(body: bytes, status: bytes = b"200 OK") -> bytes:
    return (b"HTTP/1.1 %s\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))


async def exchange(data: bytes, the_app: GrapeApp | None = None, *,
                   close: bool = True) -> bytes:
    """Send ``data`` (then EOF), collect everything until the server closes."""
    client, server = trio.testing.memory_stream_pair()
    received = bytearray()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_connection, server, the_app or app())
            await client.send_all(data)
            if close:
                await client.send_eof()
            while chunk := await client.receive_some():
                received += chunk
    return DATE.sub(b"", bytes(received))


async def test_keep_alive_pipelined_requests_and_exact_headers() -> None:
    got = await exchange(post(b'{"data":["svc",1]}', b"/announce") + b"\r\n"
                         + post(b'{"data":"svc"}') + post(b"", b"/get"))
    assert got == (ok(b'"No nodes to query"') + ok(b'["127.0.0.1:1"]')
                   + ok(b"ERR_GRAPE_PAYLOAD_INVALID", b"500 Internal Server Error"))
    assert b"Content-Type" not in got


async def test_connection_close_and_http10() -> None:
    got = await exchange(post(b'{"data":"a"}', extra=b"Connection: close\r\n"))
    assert got == b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n[]"
    got = await exchange(b'POST /lookup HTTP/1.0\r\nContent-Length: 12\r\n\r\n{"data":"a"}')
    assert got == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n[]"


async def test_chunked_body_and_expect_continue() -> None:
    body = b'{"data":"a"}'
    chunked = (b"POST /lookup HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert await exchange(chunked) == ok(b"[]")
    got = await exchange(post(body, extra=b"Expect: 100-continue\r\n"))
    assert got == b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"[]")


async def test_payload_limit_413_then_the_connection_goes_on() -> None:
    big = b'{"data":"' + b"a" * 100 + b'"}'
    got = await exchange(post(big) + post(b'{"data":"a"}'), app(limit=50))
    assert got == ok(b"ERR_GRAPE_PAYLOAD_SIZE", b"413 Payload Too Large") + ok(b"[]")
    chunked = (b"POST /lookup HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
    got = await exchange(chunked + post(b'{"data":"a"}'), app(limit=50))
    assert got == ok(b"ERR_GRAPE_PAYLOAD_SIZE", b"413 Payload Too Large") + ok(b"[]")


@pytest.mark.parametrize(("data", "answer"), [
    (b"garbage\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"),
    (b"\x00\xff\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"),
    (b"POST /lookup HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
     b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n0\r\n\r\n"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
     b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n"),
    (b"POST /lookup HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{", b""),
    (b"", b""),
])
async def test_bad_clients_get_node_style_answers(data: bytes, answer: bytes) -> None:
    assert await exchange(data) == answer


async def test_idle_connection_closes_after_keep_alive_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    started = trio.current_time()
    got = await exchange(post(b'{"data":"a"}'), close=False)
    assert got == ok(b"[]")
    assert 5.0 <= trio.current_time() - started < 7.0


async def test_slow_request_gets_408(autojump_clock: trio.testing.MockClock) -> None:
    got = await exchange(b"POST /lookup HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{",
                         app(timeouts=Timeouts(request=3.0)), close=False)
    assert got == b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n"


async def test_one_byte_at_a_time() -> None:
    client, server = trio.testing.memory_stream_pair()
    request = post(b'{"data":"a"}') * 2
    received = bytearray()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_connection, server, app())
            for i in range(len(request)):
                await client.send_all(request[i:i + 1])
            await client.send_eof()
            while chunk := await client.receive_some():
                received += chunk
    assert DATE.sub(b"", bytes(received)) == ok(b"[]") * 2


async def test_client_that_vanishes_does_not_break_the_server() -> None:
    the_app = app()
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_connection, server, the_app)
            await client.send_all(post(b'{"data":"a"}'))
            await client.aclose()
        # The connection ended (the nursery exited) without an unexpected error, and
        # the same app answers the next client.
        assert the_app.errors_logged == 0
        assert await exchange(post(b'{"data":"a"}'), the_app) == ok(b"[]")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([
    b"POST /lookup HTTP/1.1\r\n", b"GET / HTTP/1.0\r\n", b"Host: x\r\n",
    b"Content-Length: 3\r\n", b"Content-Length: abc\r\n", b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n", b"Expect: 100-continue\r\n", b"\r\n", b"{}\r\n",
    b'{"data":"a"}', b"0\r\n\r\n", b"\x00", b"\xff\xfe", b" ", b"5\r\nhello\r\n",
]), max_size=12), st.binary(max_size=40))
async def test_fuzz_http_layer_never_crashes_or_hangs(parts: list[bytes], tail: bytes) -> None:
    got = await exchange(b"".join(parts) + tail)
    assert got == b"" or got.startswith(b"HTTP/1.1 ")
