"""GrapeClient: the four Grape HTTP endpoints over one pooled httpx.AsyncClient."""

from __future__ import annotations

import enum
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Final, Self, TypeVar

import anyio
import httpx

from ._errors import GrapeUnavailable
from ._models import GrapeRecord
from ._replies import (
    NO_NODES,
    Reply,
    immutable_hash,
    parse_announce,
    parse_get,
    parse_lookup,
    parse_put,
)

__all__ = ["GrapeClient"]

logger = logging.getLogger("grape_client")

_T = TypeVar("_T")

_GET_HASH_RE: Final = re.compile(r"[0-9a-fA-F]{40}")

# Grape's server closes idle keep-alive connections after 5 s (grape-http-api.md §1);
# httpx's default keepalive_expiry is also 5 s, so a pooled connection could be
# reused just as the server closes it. Drop idle connections well before that.
_KEEPALIVE_EXPIRY: Final = 2.0

#: The largest reply read from a grape. Real answers are small: a lookup lists at
#: most 100 "host:port" strings (about 3 KB), a get carries a value under 1000 UTF-16
#: code units (under 10 KB as escaped JSON). 1 MiB leaves two orders of magnitude of
#: headroom and keeps a broken or hostile grape from filling memory.
MAX_REPLY_BYTES: Final = 1024 * 1024


class _BrokenReply(Exception):
    """Internal: the grape's reply was too large; treated like an unreachable grape."""


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class GrapeClient:
    """An async client for one or more Grape HTTP endpoints.

    Use it as an async context manager; it holds one pooled
    :class:`httpx.AsyncClient` and works under trio and asyncio alike::

        async with GrapeClient(["http://127.0.0.1:30001", "http://127.0.0.1:40001"]) as grape:
            await grape.announce("auction", 5001)
            peers = await grape.lookup("auction")

    Like httpx, a client can be opened once: after it is closed every call
    raises :class:`RuntimeError`. Calls made before ``async with`` open it
    implicitly (then close it with :meth:`aclose`).

    **Failover.** Each call goes to the current URL. If that grape cannot be
    reached (connection refused or reset, timeout, broken reply), the call is
    repeated on the next URL, and so on once round the list; the URL that
    answered becomes the current one for later calls. When none answers,
    :class:`GrapeUnavailable` is raised. An answer from a grape, even an error
    (:class:`GrapeError`), is final: it is not retried elsewhere. All four
    endpoints are idempotent, so repeating a call whose reply was lost is safe.

    Args:
        urls: base URL of a grape's HTTP API (``"http://127.0.0.1:30001"``), or
            several, tried in order.
        timeout: seconds allowed for each phase of a request (connect, write,
            read, pool), as in :class:`httpx.Timeout`. The grenache Node client
            uses 2.5 s.
        deadline: seconds allowed for a whole request to one grape, reply
            included (a grape that drips its answer byte by byte passes every
            per-phase timeout); past it the next grape is tried. Default: twice
            ``timeout``.
        max_reply_bytes: the largest reply read (:data:`MAX_REPLY_BYTES`); a
            larger one is dropped unread and the next grape is tried.
        transport: an httpx transport to use instead of the network, e.g.
            :class:`httpx.MockTransport` in tests.

    Raises:
        ValueError: no URL, a URL that is not ``http(s)://host...``, or a
            timeout that is not positive.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        timeout: float = 2.5,
        deadline: float | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url_list = [urls] if isinstance(urls, str) else list(urls)
        if not url_list:
            raise ValueError("GrapeClient needs at least one grape URL")
        for url in url_list:
            _check_url(url)
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if deadline is not None and not deadline > 0:
            raise ValueError(f"deadline must be positive, not {deadline!r}")
        if not max_reply_bytes > 0:
            raise ValueError(f"max_reply_bytes must be positive, not {max_reply_bytes!r}")
        self._deadline = 2 * timeout if deadline is None else deadline
        self._max_reply_bytes = max_reply_bytes
        self._urls: tuple[str, ...] = tuple(u.rstrip("/") for u in url_list)
        self._current = 0
        self._state = _State.UNOPENED
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(keepalive_expiry=_KEEPALIVE_EXPIRY),
            # Grapes are local services: never route them through a proxy from
            # the environment, and never follow redirects (mutable puts answer
            # 301/302 without a Location, §5).
            trust_env=False,
            follow_redirects=False,
        )

    @staticmethod
    def check_url(url: object) -> None:
        """Raise ``ValueError`` (saying why) unless ``url`` looks like ``http://host:port``.

        The constructor checks every URL this way; a CLI can check its flags early.
        """
        _check_url(url)

    @property
    def urls(self) -> tuple[str, ...]:
        """All grape URLs, in the order they are tried (trailing ``/`` removed)."""
        return self._urls

    @property
    def url(self) -> str:
        """The URL the next call goes to first: the last one that answered."""
        return self._urls[self._current]

    @property
    def is_closed(self) -> bool:
        """True once :meth:`aclose` ran (or the ``async with`` block ended)."""
        return self._state is _State.CLOSED

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise RuntimeError(
                "Cannot open a GrapeClient more than once."
                if self._state is _State.OPENED
                else "Cannot reopen a GrapeClient after it has been closed."
            )
        self._state = _State.OPENED
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections. Closing twice is harmless."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        await self._http.aclose()

    async def announce(self, name: str, port: int) -> int:
        """Announce that service ``name`` listens on ``port`` of this host.

        The grape records the address it sees the announce come from (or its
        own ``-b`` address), never a host sent by the client (§4).

        Args:
            name: service name; must not be empty (an empty name poisons a
                real grape, §7).
            port: TCP port, 1-65535. Port 0 is refused: Grape would announce
                its own DHT port instead (§3), which is never what a service
                means.

        Returns:
            The number of *other* grape nodes that stored the record. ``0``
            means Grape answered ``"No nodes to query"``: no other node was
            reachable and the record is stored only on the grape we asked
            (when it runs with ``-b``, §3-4); its own lookups, and those of
            nodes that later query it, still find it.

        Raises:
            GrapeError: the grape refused the announce (e.g.
                ``"All queries failed"``) or sent an unexpected reply.
            GrapeUnavailable: no grape could be reached.
            ValueError: empty name or port out of range.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"service name must be a non-empty string, not {name!r}")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise ValueError(f"port must be an integer in 1-65535, not {port!r}")
        stored = await self._call("announce", [name, port], parse_announce)
        if stored is None:
            logger.debug(
                "announce %r:%d: grape answered %r, stored only on %s",
                name, port, NO_NODES, self.url,
            )
            return 0
        return stored

    async def lookup(self, name: str) -> list[str]:
        """Find the addresses announced under ``name``.

        Args:
            name: service name.

        Returns:
            ``"host:port"`` strings, without duplicates, in no particular order
            (Grape shuffles them and returns at most 100, §2). Empty when nobody
            announced the name. Dead services stay listed: Grape never probes.

        Raises:
            GrapeError: e.g. ``"ERR_GRAPE_LOOKUP"`` for an empty name.
            GrapeUnavailable: no grape could be reached.
        """
        return await self._call("lookup", name, parse_lookup)

    async def put(self, value: str) -> str:
        """Store an immutable value in the DHT.

        Args:
            value: the value; Grape refuses values of 1000 UTF-16 code units
                or more (§5).

        Returns:
            The value's hash: 40 lower-case hex digits, sha1 of its bencoding.
            If Grape answers ``"No nodes to query"`` (a lone grape, which still
            keeps the value itself, §5) the hash is computed locally and
            returned, as :meth:`announce` returns 0 in that case.

        Raises:
            GrapeError: e.g. ``"v must be less than 1000 bytes in put()"`` or
                ``"All queries failed"``.
            GrapeUnavailable: no grape could be reached.
        """
        digest = await self._call("put", {"v": value}, parse_put)
        if digest is None:
            logger.debug("put: grape answered %r, stored only on %s", NO_NODES, self.url)
            return immutable_hash(value)
        return digest

    async def get(self, hash: str) -> GrapeRecord | None:
        """Fetch a value by the hash :meth:`put` returned.

        Args:
            hash: 40 hex digits (either case). Anything else is refused
                client-side: non-hex keys poison a real grape (§7).

        Returns:
            The record, or None when no node holds the hash.

        Raises:
            GrapeError: the grape sent an error or an unexpected reply.
            GrapeUnavailable: no grape could be reached.
            ValueError: ``hash`` is not 40 hex digits.
        """
        if not isinstance(hash, str) or not _GET_HASH_RE.fullmatch(hash):
            raise ValueError(f"hash must be 40 hex digits, not {hash!r}")
        return await self._call("get", hash, parse_get)

    async def _call(self, endpoint: str, data: object, parse: Callable[[Reply], _T]) -> _T:
        """POST ``{"rid", "data"}`` to ``/<endpoint>``, failing over between URLs."""
        if self._state is _State.CLOSED:
            raise RuntimeError("Cannot send a request, as the GrapeClient has been closed.")
        self._state = _State.OPENED
        # Like the Node client: a fresh request id per call (Grape ignores it).
        # ensure_ascii keeps the body encodable whatever the strings hold
        # (lone surrogates); Grape's JSON.parse reads the \u escapes.
        body = json.dumps(
            {"rid": str(uuid.uuid4()), "data": data}, separators=(",", ":"), allow_nan=False
        ).encode("ascii")
        failures: list[str] = []
        start = self._current
        last_exc: Exception | None = None
        for step in range(len(self._urls)):
            index = (start + step) % len(self._urls)
            url = self._urls[index]
            try:
                with anyio.fail_after(self._deadline):
                    status, raw = await self._post(f"{url}/{endpoint}", body)
            except (httpx.TransportError, _BrokenReply, TimeoutError) as exc:
                reason = (f"no complete reply within {self._deadline:g} s"
                          if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}")
                logger.debug("grape %s unreachable for /%s: %s", url, endpoint, reason)
                failures.append(f"{url} ({reason})")
                last_exc = exc
                continue
            if index != self._current:
                logger.info("grape %s unreachable, switched to %s", self.url, url)
                self._current = index
            return parse(Reply(endpoint=endpoint, url=url, status=status, body=raw))
        raise GrapeUnavailable(
            f"no grape answered /{endpoint}: " + "; ".join(failures)
        ) from last_exc

    async def _post(self, url: str, body: bytes) -> tuple[int, bytes]:
        request = self._http.build_request(
            "POST", url, content=body, headers={"Content-Type": "application/json"}
        )
        request.stream = _Body(body)
        response = await self._http.send(request, stream=True)
        try:
            if response.is_stream_consumed:
                # A transport that returns a response it already read, e.g.
                # httpx.MockTransport with Response(content=...).
                raw = response.content
            else:
                # Raw bytes: Grape never sets Content-Encoding (§1), and decoding
                # one that some other server set could only fail in new ways.
                raw = await self._read_capped(response)
        finally:
            await response.aclose()
        if len(raw) > self._max_reply_bytes:
            raise _BrokenReply(f"reply of {len(raw)} bytes exceeds {self._max_reply_bytes}")
        return response.status_code, raw

    async def _read_capped(self, response: httpx.Response) -> bytes:
        """The body, refused as soon as it (or its declared length) passes the cap."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_reply_bytes:
            raise _BrokenReply(f"reply of {declared} bytes exceeds {self._max_reply_bytes}")
        chunks: list[bytes] = []
        size = 0
        # Leaving httpx's body iterator early (break, raise) leaves its nested async
        # generators unfinished, which trio reports as a ResourceWarning
        # (encode/httpx#3686). Cancelling instead lands in the innermost read, and the
        # cancellation unwinds and finishes every generator on its way out.
        with anyio.CancelScope() as stop_reading:
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self._max_reply_bytes:
                    stop_reading.cancel()
                    continue
                chunks.append(chunk)
        if size > self._max_reply_bytes:
            raise _BrokenReply(f"reply longer than {self._max_reply_bytes} bytes")
        return b"".join(chunks)


def _check_url(url: object) -> None:
    if not isinstance(url, str):
        raise ValueError(f"grape URL must be a string, not {url!r}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid grape URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"grape URL must look like http://host:port, not {url!r}")


class _Body(httpx.AsyncByteStream):
    """A request body that is not an async generator.

    httpx sends ``content=bytes`` through ``ByteStream.__aiter__``, an async
    generator; a request cancelled while its body is being sent (a node stopping
    mid-announce) leaves that generator suspended, and trio reports it when it is
    garbage collected. A plain iterator object has nothing to finalize.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self._data)


class _Once:
    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data
