"""Turning a grape's HTTP reply into a result or a :class:`GrapeError`, without I/O.

Everything here takes the status and the raw body bytes and either returns the
endpoint's result or raises :class:`GrapeError`; it never raises anything else,
whatever the bytes are (the unit tests fuzz this with Hypothesis). Section
numbers refer to grape-http-api.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Final

from ._errors import GrapeError
from ._models import GrapeRecord

__all__ = [
    "NO_NODES",
    "Reply",
    "immutable_hash",
    "parse_announce",
    "parse_get",
    "parse_lookup",
    "parse_put",
]

#: Announce/put answer of a grape that has no other DHT node to ask (§3, §5).
NO_NODES: Final = "No nodes to query"

_HASH_RE: Final = re.compile(r"[0-9a-f]{40}")
_OPTIONAL_STR_FIELDS: Final = ("salt", "k", "sig")


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP reply of a grape, as received."""

    endpoint: str
    url: str
    status: int
    body: bytes

    @property
    def text(self) -> str:
        # Grape itself decodes with replacement (§1); do the same, never raise.
        return self.body.decode("utf-8", errors="replace")

    def error(self, code: str | None = None) -> GrapeError:
        """A GrapeError for this reply; the code defaults to the body text."""
        return GrapeError(
            self.text if code is None else code,
            status=self.status,
            endpoint=self.endpoint,
            url=self.url,
        )


class _Empty:
    """The 200-with-empty-body answer (a get miss, §5)."""


_EMPTY: Final = _Empty()


def _decode(reply: Reply) -> object:
    """Parse a reply's JSON, raising GrapeError for error replies (§1).

    Returns the parsed value of a 200 reply, or ``_EMPTY`` for an empty body.
    A JSON string is returned as is: whether it is a result (a put hash) or an
    error message depends on the endpoint.
    """
    if reply.status != 200:
        # 500/413 carry the bare message; 301/302 (mutable put, §5) a JSON string.
        try:
            parsed = json.loads(reply.text)
        except (ValueError, RecursionError):
            raise reply.error() from None
        raise reply.error(parsed if isinstance(parsed, str) else None)
    if not reply.body:
        return _EMPTY
    try:
        return json.loads(reply.text)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and over-long integer literals;
        # RecursionError a body like "[[[[...".
        raise reply.error() from None


def _unexpected(reply: Reply, parsed: object) -> GrapeError:
    """A JSON string is the grape's error message; any other shape is reported verbatim."""
    return reply.error(parsed if isinstance(parsed, str) else None)


def parse_announce(reply: Reply) -> int | None:
    """The number of nodes that stored the record, or None for ``"No nodes to query"``."""
    parsed = _decode(reply)
    if parsed == NO_NODES:
        return None
    # bool is an int in Python; `true` is not a count.
    if isinstance(parsed, int) and not isinstance(parsed, bool) and parsed >= 0:
        return parsed
    raise _unexpected(reply, parsed)


def parse_lookup(reply: Reply) -> list[str]:
    """The ``"host:port"`` strings of a lookup reply (§2)."""
    parsed = _decode(reply)
    if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
        return [str(p) for p in parsed]
    raise _unexpected(reply, parsed)


def parse_put(reply: Reply) -> str | None:
    """The hash of a put, or None for ``"No nodes to query"`` (§5)."""
    parsed = _decode(reply)
    if parsed == NO_NODES:
        return None
    if isinstance(parsed, str) and _HASH_RE.fullmatch(parsed):
        return parsed
    raise _unexpected(reply, parsed)


def parse_get(reply: Reply) -> GrapeRecord | None:
    """The record of a get reply, or None on a miss (empty body, §5)."""
    parsed = _decode(reply)
    if parsed is _EMPTY:
        return None
    if not isinstance(parsed, dict):
        raise _unexpected(reply, parsed)
    node_id = parsed.get("id")
    value = parsed.get("v")
    token = parsed.get("token")
    seq = parsed.get("seq")
    optional = {name: parsed.get(name) for name in _OPTIONAL_STR_FIELDS}
    if (
        not isinstance(node_id, str)
        or not isinstance(value, str)
        or not (token is None or isinstance(token, str))
        or not (seq is None or (isinstance(seq, int) and not isinstance(seq, bool)))
        or not all(o is None or isinstance(o, str) for o in optional.values())
    ):
        raise reply.error()
    return GrapeRecord(
        id=node_id,
        token=token,
        v=value,
        seq=seq,
        salt=_opt_str(optional["salt"]),
        k=_opt_str(optional["k"]),
        sig=_opt_str(optional["sig"]),
    )


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def immutable_hash(value: str) -> str:
    """The key Grape stores an immutable string under: sha1 of its bencoding (§5).

    >>> immutable_hash("hello")
    'e28910ea0adb94dd45ced75fbff3e135c01bc437'
    """
    # Node turns lone surrogates into U+FFFD when it encodes a string as UTF-8.
    raw = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")
    return hashlib.sha1(b"%d:%b" % (len(raw), raw)).hexdigest()
