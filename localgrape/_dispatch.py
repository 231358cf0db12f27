"""The sans-IO core of localgrape: request target and body in, status and body out.

Nothing here does I/O or reads a clock. The flow mirrors Grape's
``transportHttp``/``onRequest`` (grape-http-api.md sections 1-5):

1. :func:`decode` parses the body and the path and validates ``data`` exactly as
   Grape does. It returns either a final :class:`Response` (validation errors,
   which never reach the DHT) or an operation for the DHT (``_store.Op``).
2. The caller runs the operation on a DHT (``Dht.execute``; for the local-only
   DHT :meth:`LocalDht.execute_nowait` is synchronous).
3. :func:`finish` turns the DHT's outcome into the :class:`Response`.

:func:`dispatch` does all three against a :class:`~localgrape._store.LocalDht`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Final

from ._js import (
    JsError,
    JsonValue,
    buffer_from,
    js_bencode,
    js_to_number,
    js_to_string,
    js_truthy,
    out_of_range_message,
    parse_json,
    utf8,
    utf16_length,
)
from ._store import (
    Announce,
    DhtFailure,
    Get,
    GetHit,
    LocalDht,
    Lookup,
    Op,
    Outcome,
    PutImmutable,
    PutMutable,
    StoredValue,
)

__all__ = [
    "ENDPOINTS",
    "Response",
    "decode",
    "dispatch",
    "finish",
    "handler_name",
]


@dataclass(frozen=True, slots=True)
class Response:
    """What the server sends: a status and the exact body bytes (no Content-Type)."""

    status: int
    body: bytes


class _Undefined:
    """JS ``undefined`` (a missing key), distinct from JSON null."""

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Final = _Undefined()
Value = JsonValue | _Undefined

ENDPOINTS: Final = frozenset({"Lookup", "Announce", "Put", "Get"})

PAYLOAD_INVALID: Final = Response(500, b"ERR_GRAPE_PAYLOAD_INVALID")
PAYLOAD_SIZE: Final = Response(413, b"ERR_GRAPE_PAYLOAD_SIZE")
_NULL_DATA: Final = Response(500, b"Cannot read properties of null (reading 'data')")

# lodash-like camelCase of grenache-grape lib/utils.js; JS \w and \b are ASCII.
_CAMEL_WORD: Final = re.compile(r"^\w|[A-Z]|\b\w|-\w|_\w", re.ASCII)
_CAMEL_DROP: Final = re.compile(
    "[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff_-]+")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


@functools.lru_cache(maxsize=256)
def handler_name(target: str) -> str:
    """The Grape handler suffix for a request-target (section 1, "Path dispatch").

    Grape drops the first character, camel-cases ``-`` + the rest and upper-cases
    the first letter: ``/lookup``, ``/Lookup`` and ``/__lookup`` all give
    ``Lookup``; ``/lookUp`` gives ``LookUp`` (not found).
    """
    text = "-" + target[1:]
    text = _CAMEL_WORD.sub(
        lambda m: m.group().lower() if m.start() == 0 else m.group().upper(), text)
    text = _CAMEL_DROP.sub("", text)
    return text[:1].upper() + text[1:]


def _json_body(value: JsonValue) -> bytes:
    """JS ``JSON.stringify`` of a result or an error string: compact, raw UTF-8."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        # Well-formed JSON.stringify escapes lone surrogates.
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.encode("utf-8")


def _ok(value: JsonValue) -> Response:
    return Response(200, _json_body(value))


def _thrown(message: str) -> Response:
    # A thrown exception: 500 with the bare message (section 1).
    return Response(500, utf8(message))


def _reading(prop: str, value: Value) -> str:
    kind = "null" if value is None else "undefined"
    return f"Cannot read properties of {kind} (reading '{prop}')"


def _get(value: Value, key: str) -> Value:
    """JS ``value[key]`` for a JSON value (own keys only; arrays/primitives: undefined)."""
    if isinstance(value, dict):
        return value.get(key, UNDEFINED)
    return UNDEFINED


def _is_integer(value: Value) -> bool:
    """JS ``Number.isInteger`` (section 8.5): booleans are not numbers."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and float(value).is_integer())


def _truthy(value: Value) -> bool:
    return not isinstance(value, _Undefined) and js_truthy(value)


def _str2buf(value: JsonValue, encoding: str = "") -> bytes:
    """Grape's ``str2buf``: ``Buffer.from(JSON.parse(val))``, else ``Buffer.from(val, enc)``."""
    try:
        return buffer_from(parse_json(js_to_string(value)))
    except (JsError, ValueError):
        return buffer_from(value, encoding)


# --- Handlers (grape-http-api.md sections 2, 3 and 5) ----------------------


def _lookup(data: Value) -> Response | Op:
    if not isinstance(data, str) or not data:
        return _ok("ERR_GRAPE_LOOKUP")
    return Lookup(utf8(data))


def _announce(data: Value, dht_port: int) -> Response | Op:
    # Order: array, then the port type, then the name, then the port range (section 3).
    if not isinstance(data, list):
        return _ok("ERR_GRAPE_ANNOUNCE")
    name = data[0] if data else UNDEFINED
    port = data[1] if len(data) > 1 else UNDEFINED
    if not _is_integer(port):
        return _ok("ERR_GRAPE_SERVICE_PORT")
    assert isinstance(port, int | float)
    assert not isinstance(name, _Undefined)  # a list long enough to hold a port
    try:
        key = buffer_from(name)
    except JsError as exc:
        return _thrown(exc.message)
    # `port || dht_port`; real Grape crashes on an out-of-range port when it has no
    # routing table for the name; localgrape always answers the 500 (section 7).
    effective = float(port) or float(dht_port)
    if not 0 <= effective <= 65535:
        return _thrown(out_of_range_message(effective))
    return Announce(key, int(effective))


def _value_text(v: JsonValue) -> StoredValue:
    """``res.v.toString()`` of a stored value, computed once at put time."""
    if isinstance(v, str):
        return StoredValue(utf8(v).decode("utf-8"))
    if isinstance(v, dict) and "toString" in v:
        return StoredValue(None, "res.v.toString is not a function")
    try:
        return StoredValue(js_to_string(v))
    except JsError as exc:
        return StoredValue(None, exc.message)


def _too_long(v: JsonValue) -> bool:
    """``opts.v.length >= 1000`` (UTF-16 length for strings, section 5).

    Raises:
        JsError: a ``length`` that is an object which cannot become a number.
    """
    if isinstance(v, str):
        return utf16_length(v) >= 1000
    if isinstance(v, list):
        return len(v) >= 1000
    if isinstance(v, dict) and "length" in v:
        return js_to_number(v["length"]) >= 1000
    return False


def _put(data: Value) -> Response | Op:
    if data is None or isinstance(data, _Undefined):
        return _thrown(_reading("k", data))
    opts: dict[str, JsonValue]
    if isinstance(data, dict):
        opts = dict(data)
    elif isinstance(data, str):
        opts = {"v": data}
    else:
        opts = {}  # numbers, booleans, arrays: `opts.v` is undefined
    mutable = _truthy(opts.get("k", UNDEFINED))
    k = sig = salt = b""
    if mutable:
        # handlePeerPut converts k, sig and salt; a TypeError there is a 500.
        try:
            k = _str2buf(opts["k"], "hex")
            if _truthy(opts.get("sig", UNDEFINED)):
                sig = _str2buf(opts["sig"], "hex")
            if _truthy(opts.get("salt", UNDEFINED)):
                salt = _str2buf(opts["salt"])
        except JsError as exc:
            return _thrown(exc.message)
    # bittorrent-dht put(): errors thrown here are caught by Grape.put (200).
    if "v" not in opts:
        return _ok("opts.v not given")
    v = opts["v"]
    if v is None:
        return _ok(_reading("length", None))
    try:
        if _too_long(v):
            return _ok("v must be less than 1000 bytes in put()")
    except JsError as exc:
        return _ok(exc.message)
    if mutable:
        return _mutable_put(opts, k, sig, salt)
    bencoded = _bencode_v(v)
    return PutImmutable(hashlib.sha1(bencoded).digest(), _value_text(v), bencoded)


def _mutable_put(opts: dict[str, JsonValue], k: bytes, sig: bytes,
                 salt: bytes) -> Response | Op:
    cas = opts.get("cas", UNDEFINED)
    if not isinstance(cas, _Undefined) and (
            isinstance(cas, bool) or not isinstance(cas, int | float)):
        return _ok("opts.cas must be an integer if provided")
    if len(k) != 32:
        return _ok("opts.k ed25519 public key must be 32 bytes")
    if not _truthy(opts.get("sig", UNDEFINED)):
        return _ok("opts.sign function or options.sig signature is required for mutable put")
    if len(salt) > 64:
        return _ok("opts.salt is > 64 bytes long")
    seq = opts.get("seq", UNDEFINED)
    if isinstance(seq, _Undefined):
        return _ok("opts.seq not provided for a mutable update")
    if isinstance(seq, bool) or not isinstance(seq, int | float):
        return _ok("opts.seq not an integer")
    # bittorrent-dht `_put` sends `v` (a Buffer for strings) and `seq`/`cas`
    # through the JS bencoder; the signature is checked by other nodes only.
    v = opts["v"]
    encoded_v = _bencode_v(v)
    cas_value = None if isinstance(cas, _Undefined) else _bencoded_int(cas)
    return PutMutable(hashlib.sha1(k + salt).digest(), encoded_v, k, sig,
                      _bencoded_int(seq), salt, cas_value)


def _bencode_v(v: JsonValue) -> bytes:
    """``v`` as bittorrent-dht bencodes it in a put (strings as UTF-8 buffers)."""
    encoded = utf8(v) if isinstance(v, str) else None
    return str(len(encoded)).encode() + b":" + encoded if encoded is not None else js_bencode(v)


def _bencoded_int(value: JsonValue) -> int:
    """A JS number as the JS bencoder writes it (``1.5`` -> ``i1e``)."""
    text = js_bencode(value)[1:-1]
    try:
        return int(text)
    except ValueError:  # 1e300 bencodes as `i1e+300e`; no grape can decode it
        return 0


def _get_op(data: Value) -> Response | Op:
    if isinstance(data, str):
        # Grape.get: str2buf(hash, 'hex'), which tries JSON.parse first (section 5).
        return Get(_str2buf(data, "hex"))
    if data is None or isinstance(data, _Undefined):
        return _thrown(_reading("salt", data))
    salt = _get(data, "salt")
    if _truthy(salt):
        assert not isinstance(salt, _Undefined)
        try:
            _str2buf(salt)
        except JsError as exc:
            return _thrown(exc.message)
    hash_value = _get(data, "hash")
    if not isinstance(hash_value, str):
        return _ok("ERR_GRAPE_GENERIC")  # bittorrent-dht toBuffer() throws
    # `cache: false` skips this node's own values and asks the network only.
    return Get(buffer_from(hash_value, "hex"), _get(data, "cache") is not False)


# --- The three steps --------------------------------------------------------


def decode(target: str, body: bytes, *, dht_port: int,
           max_payload_size: int | None = None) -> Response | Op:
    """Validate a request exactly as Grape does (sections 1-5).

    Args:
        target: the HTTP request-target, e.g. ``"/lookup"``.
        body: the whole request body.
        dht_port: this grape's DHT port (announced for port 0).
        max_payload_size: ``--check_maxPayloadSize``, or None for no limit.

    Returns:
        The final response, or the operation the DHT must run.
    """
    if max_payload_size is not None and len(body) > max_payload_size:
        return PAYLOAD_SIZE
    try:
        msg = parse_json(body.decode("utf-8", "replace"))
    except ValueError:
        return PAYLOAD_INVALID
    if msg is None:
        return _NULL_DATA
    data = _get(msg, "data")
    name = handler_name(target)
    if name not in ENDPOINTS:
        return _ok("ERR_REQ_NOTFOUND")
    if name == "Lookup":
        return _lookup(data)
    if name == "Announce":
        return _announce(data, dht_port)
    if name == "Put":
        return _put(data)
    return _get_op(data)


def finish(op: Op, outcome: Outcome) -> Response:
    """The response for ``op`` given the DHT's ``outcome``."""
    if isinstance(outcome, DhtFailure):
        return Response(outcome.status, _json_body(outcome.message))
    if isinstance(op, Lookup):
        assert isinstance(outcome, list)
        return _ok(list(outcome))
    if isinstance(op, Announce):
        assert isinstance(outcome, int)
        return _ok(outcome)
    if isinstance(op, PutImmutable | PutMutable):
        return _ok(op.target.hex())
    if outcome is None:
        return Response(200, b"")  # a get miss: empty body (section 1)
    assert isinstance(outcome, GetHit)
    value = outcome.value
    if value.text is None:
        return _thrown(value.error or "")
    return _ok({"id": outcome.node_id, "token": outcome.token, "v": value.text})


def dispatch(target: str, body: bytes, dht: LocalDht, now: float, *,
             max_payload_size: int | None = None) -> Response:
    """Answer one request against a local DHT at time ``now``: no I/O at all."""
    decoded = decode(target, body, dht_port=dht.dht_port,
                     max_payload_size=max_payload_size)
    if isinstance(decoded, Response):
        return decoded
    return finish(decoded, dht.execute_nowait(decoded, now))
