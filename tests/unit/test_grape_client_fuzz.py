"""Whatever a grape (or an impostor) answers, GrapeClient returns a documented result
or raises GrapeClientError: never KeyError, TypeError, httpx errors, ...
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

import httpx
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grape_client import GrapeClient, GrapeClientError, GrapeError, GrapeRecord, GrapeUnavailable

URL = "http://127.0.0.1:30001"
HASH = "e28910ea0adb94dd45ced75fbff3e135c01bc437"

Call = Callable[[GrapeClient], Awaitable[object]]


def _is_announce_result(r: object) -> bool:
    return type(r) is int and r >= 0


def _is_lookup_result(r: object) -> bool:
    return isinstance(r, list) and all(type(p) is str for p in r)


def _is_put_result(r: object) -> bool:
    return isinstance(r, str) and re.fullmatch(r"[0-9a-f]{40}", r) is not None


def _is_get_result(r: object) -> bool:
    return r is None or (
        isinstance(r, GrapeRecord) and type(r.id) is str and type(r.v) is str
        and (r.token is None or type(r.token) is str)
        and (r.seq is None or type(r.seq) is int)
    )


ENDPOINTS: dict[str, tuple[Call, Callable[[object], bool]]] = {
    "announce": (lambda c: c.announce("svc", 5001), _is_announce_result),
    "lookup": (lambda c: c.lookup("svc"), _is_lookup_result),
    "put": (lambda c: c.put("hello"), _is_put_result),
    "get": (lambda c: c.get(HASH), _is_get_result),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(
        st.sampled_from(["id", "token", "v", "seq", "salt", "k", "sig", "x"]) | st.text(max_size=5),
        inner,
        max_size=7,
    ),
    max_leaves=20,
)
plausible_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [b"", b"1", b"[]", b'"No nodes to query"', b'"ERR_GRAPE_LOOKUP"', b"NaN", b"Infinity",
         b'{"id":"a","token":null,"v":"b"}', json.dumps(HASH).encode(), b"[" * 5000]
    ),
)
bodies = plausible_bodies | st.binary(max_size=200)
statuses = st.sampled_from([200, 200, 200, 204, 301, 302, 404, 413, 500, 502]) | st.integers(
    200, 599
)
headers = st.sampled_from([{}, {"Content-Type": "application/json"}, {"Content-Encoding": "gzip"},
                           {"Content-Encoding": "br"}, {"Transfer-Encoding": "chunked"}])


def _outcome(endpoint: str, transport: httpx.AsyncBaseTransport) -> object:
    call, _ = ENDPOINTS[endpoint]

    async def main() -> object:
        async with GrapeClient(URL, transport=transport) as client:
            try:
                return await call(client)
            except GrapeClientError as exc:
                return exc

    return trio.run(main)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(ENDPOINTS)), statuses, bodies, headers)
def test_any_reply_gives_a_result_or_grape_error(
    endpoint: str, status: int, body: bytes, extra_headers: dict[str, str]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # stream=, not content=: the body reaches the client unread, as from a socket.
        return httpx.Response(status, headers=extra_headers, stream=httpx.ByteStream(body))

    result = _outcome(endpoint, httpx.MockTransport(handler))
    if isinstance(result, GrapeClientError):
        assert isinstance(result, GrapeError)
        assert result.status == status
        assert isinstance(result.code, str)
        str(result)
    else:
        assert status == 200
        _, valid = ENDPOINTS[endpoint]
        assert valid(result), result


transport_errors = st.sampled_from(
    [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout,
     httpx.PoolTimeout, httpx.ReadError, httpx.WriteError, httpx.CloseError,
     httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.ProxyError,
     httpx.UnsupportedProtocol]
)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(ENDPOINTS)), transport_errors, st.text(max_size=30))
def test_any_transport_error_is_grape_unavailable(
    endpoint: str, error: type[httpx.TransportError], message: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error(message, request=request)

    result = _outcome(endpoint, httpx.MockTransport(handler))
    assert isinstance(result, GrapeUnavailable)
    assert isinstance(result.__cause__, error)
