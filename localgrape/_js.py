"""JavaScript semantics that Grape's answers depend on, for JSON-decoded values.

Grape is Node.js: the body is parsed with ``JSON.parse``, names go through
``Buffer.from``, numbers are IEEE doubles, strings are UTF-16 and error texts are
Node's. This module reproduces exactly the parts that show up in Grape's HTTP
answers (grape-http-api.md sections 1, 3 and 5). It is pure: no I/O, no state.

JSON values are represented as Python ``None`` (null), ``bool``, ``float`` (every
JSON number, as in JS), ``str``, ``list`` and ``dict``. :func:`parse_json`
produces exactly these types.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Final, TypeAlias

__all__ = [
    "MAX_ARRAY_LIKE",
    "JsError",
    "JsonValue",
    "buffer_from",
    "js_bencode",
    "js_hex_decode",
    "js_to_number",
    "js_to_string",
    "js_truthy",
    "number_to_string",
    "out_of_range_message",
    "parse_json",
    "utf8",
    "utf16_length",
]

JsonValue: TypeAlias = bool | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None

# Buffer.from(array-like) with a larger ``length`` would allocate that many bytes.
# Node would try (and might succeed up to 4 GiB); localgrape refuses, so that a
# 30-byte request cannot make it allocate gigabytes (grape-http-api.md section 7:
# never crash).
MAX_ARRAY_LIKE: Final = 1 << 20

_FIRST_ARG_TYPES: Final = (
    "The first argument must be of type string or an instance of Buffer, ArrayBuffer, "
    "or Array or an Array-like Object."
)
_NO_PRIMITIVE: Final = "Cannot convert object to primitive value"
_SURROGATE = re.compile("[\ud800-\udfff]")
# ECMAScript WhiteSpace and LineTerminator, which StringToNumber trims.
_JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_TRIM = re.compile(f"^[{_JS_SPACE}]+|[{_JS_SPACE}]+$")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_RADIX = re.compile(r"0([xXoObB])([0-9a-fA-F]+)")
_HEX_PAIRS = re.compile(r"(?:[0-9a-fA-F]{2})*")


class JsError(Exception):
    """A JavaScript exception: its ``message`` is what Grape puts in the answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _reject_constant(name: str) -> float:
    # JSON.parse has no NaN or Infinity literals (grape-http-api.md section 8.1).
    raise ValueError(f"invalid JSON constant {name}")


_DECODER: Final = json.JSONDecoder(parse_float=float, parse_int=float,
                                   parse_constant=_reject_constant)


def parse_json(text: str) -> JsonValue:
    """Parse ``text`` like ``JSON.parse``: strict, numbers as doubles, last key wins.

    Raises:
        ValueError: the text is not JSON (this includes NaN, Infinity, a BOM and
            trailing garbage). RecursionError is also mapped to ValueError: JSON
            nested deeper than Python's recursion limit is refused (a documented
            difference; V8 would parse it).
    """
    try:
        value: JsonValue = _DECODER.decode(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    return value


def js_truthy(value: JsonValue) -> bool:
    """JS ToBoolean of a JSON value (NaN cannot come from JSON)."""
    if value is None or value is False:
        return False
    if isinstance(value, float):
        return value != 0.0
    if isinstance(value, str):
        return value != ""
    return True


def utf16_length(text: str) -> int:
    """The JS ``string.length``: code points above U+FFFF count twice."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def utf8(text: str) -> bytes:
    """``Buffer.from(text)``: UTF-8, with lone surrogates written as U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def number_to_string(value: float) -> str:
    """JS ``Number.prototype.toString()`` (shortest round-trip, ECMA-262 7.1.12.1)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"  # also for -0
    sign = "-" if value < 0 else ""
    # repr() gives the shortest round-trip digits, as JS does; only the layout
    # (where the exponent form starts) differs.
    parts = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, parts.digits))
    assert isinstance(parts.exponent, int)
    point = len(digits) + parts.exponent
    k = len(digits)
    n = point
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    exponent = n - 1
    exp_str = f"e+{exponent}" if exponent >= 0 else f"e-{-exponent}"
    if k == 1:
        return sign + digits + exp_str
    return sign + digits[0] + "." + digits[1:] + exp_str


def js_to_string(value: JsonValue) -> str:
    """JS ``String(value)`` for a JSON value.

    Raises:
        JsError: an object with an own ``toString`` key (from JSON it is never
            callable, so ToPrimitive fails).
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return number_to_string(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join("" if item is None else js_to_string(item) for item in value)
    if "toString" in value:
        raise JsError(_NO_PRIMITIVE)
    return "[object Object]"


def _string_to_number(text: str) -> float:
    text = _TRIM.sub("", text)
    if not text:
        return 0.0
    if text in ("Infinity", "+Infinity"):
        return math.inf
    if text == "-Infinity":
        return -math.inf
    radix = _RADIX.fullmatch(text)
    if radix:
        base = {"x": 16, "o": 8, "b": 2}[radix.group(1).lower()]
        try:
            return float(int(radix.group(2), base))
        except ValueError:
            return math.nan
        except OverflowError:
            return math.inf
    if _DECIMAL.fullmatch(text):
        return float(text)
    return math.nan


def js_to_number(value: JsonValue) -> float:
    """JS ``Number(value)`` for a JSON value (may be NaN).

    Raises:
        JsError: an object with an own ``toString`` key.
    """
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _string_to_number(value)
    return _string_to_number(js_to_string(value))


def _to_int32(value: float) -> int:
    if not math.isfinite(value):
        return 0
    n = int(value) & 0xFFFFFFFF
    return n - (1 << 32) if n >= (1 << 31) else n


def _to_uint8(value: float) -> int:
    if not math.isfinite(value):
        return 0
    return int(value) & 0xFF


def _inspect_number(value: float) -> str:
    if value == 0 and math.copysign(1.0, value) < 0:
        return "-0"
    return number_to_string(value)


def _received(value: JsonValue) -> str:
    """Node's ``determineSpecificType`` (the tail of ERR_INVALID_ARG_TYPE texts)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        ctor = value.get("constructor", _MISSING) if "constructor" in value else _MISSING
        if ctor is _MISSING:
            return "an instance of Object"
        name = ctor.get("name") if isinstance(ctor, dict) else None
        if js_truthy(name):
            return f"an instance of {js_to_string(name)}"
        return "[Object]"
    if isinstance(value, list):
        return "an instance of Array"
    if isinstance(value, bool):
        inspected, kind = ("true" if value else "false"), "boolean"
    elif isinstance(value, int | float):
        inspected, kind = _inspect_number(float(value)), "number"
    else:
        inspected, kind = "'" + value + "'", "string"
    if len(inspected) > 28:
        inspected = inspected[:25] + "..."
    return f"type {kind} ({inspected})"


_MISSING: Final = object()


def invalid_arg_type(value: JsonValue) -> JsError:
    """The TypeError ``Buffer.from`` throws for an unusable first argument."""
    return JsError(f"{_FIRST_ARG_TYPES} Received {_received(value)}")


def out_of_range_message(value: float) -> str:
    """Node's ERR_OUT_OF_RANGE text for ``buf.writeUInt16BE(value)`` (section 3)."""
    if value.is_integer() and abs(value) > 2**32:
        text = number_to_string(value)
        start = 1 if text.startswith("-") else 0
        res = ""
        i = len(text)
        while i >= start + 4:
            res = "_" + text[i - 3:i] + res
            i -= 3
        received = text[:i] + res
    else:
        received = _inspect_number(value)
    return ('The value of "value" is out of range. It must be >= 0 and <= 65535. '
            f"Received {received}")


def _from_array_like(items: list[JsonValue] | dict[str, JsonValue], length: float) -> bytes:
    if not length > 0:
        return b""
    if length >= 2**53 - 1 or length > MAX_ARRAY_LIKE:
        raise JsError(f"Invalid typed array length: {number_to_string(math.floor(length))}")
    count = int(length)
    out = bytearray(count)
    for i in range(count):
        if isinstance(items, list):
            item = items[i] if i < len(items) else None
            out[i] = _to_uint8(js_to_number(item)) if i < len(items) else 0
        else:
            key = str(i)
            out[i] = _to_uint8(js_to_number(items[key])) if key in items else 0
    return bytes(out)


def js_hex_decode(text: str) -> bytes:
    """``Buffer.from(text, 'hex')``: pairs up to the first invalid one, odd tail dropped."""
    match = _HEX_PAIRS.match(text)
    assert match is not None  # the pattern matches the empty string
    return bytes.fromhex(match.group(0))


def buffer_from(value: JsonValue, encoding: str = "") -> bytes:
    """Node's ``Buffer.from(value[, encoding])`` for a JSON value.

    Args:
        value: the JSON value.
        encoding: ``"hex"`` or ``""`` (UTF-8); only used for strings.

    Raises:
        JsError: with Node's exact TypeError text for numbers, booleans, null and
            objects that are not array-like.
    """
    if isinstance(value, str):
        return js_hex_decode(value) if encoding == "hex" else utf8(value)
    if isinstance(value, list):
        return _from_array_like(value, float(len(value)))
    if isinstance(value, dict):
        if js_truthy(value.get("valueOf")):
            # `value.valueOf && value.valueOf()`: a JSON valueOf is never callable.
            raise JsError("value.valueOf is not a function")
        if "length" in value:
            length = value["length"]
            if isinstance(length, bool) or not isinstance(length, int | float):
                return b""
            return _from_array_like(value, float(length))
        data = value.get("data")
        if value.get("type") == "Buffer" and isinstance(data, list):
            return _from_array_like(data, float(len(data)))
    raise invalid_arg_type(value)


def _bencode_number(value: float) -> bytes:
    # bencode 2.0.3 encode.number: hi/lo split through ToInt32, floats truncated.
    max_lo = 2147483648.0
    hi = _to_int32(value / max_lo)
    lo = _to_int32(math.fmod(value, max_lo)) if math.isfinite(value) else 0
    return b"i" + number_to_string(hi * max_lo + lo).encode() + b"e"


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def js_bencode(value: JsonValue, out: bytearray | None = None) -> bytes:
    """bencode 2.0.3 ``encode`` of a JSON value, as bittorrent-dht hashes a put.

    null members of lists and dicts are skipped, numbers and booleans become
    integers, dict keys are sorted by UTF-16 code units (JS ``Array.sort``).
    """
    buf = bytearray() if out is None else out
    stack: list[JsonValue | bytes] = [value]
    while stack:
        item = stack.pop()
        if item is None:
            continue
        if isinstance(item, bytes):
            buf += item
        elif isinstance(item, bool):
            buf += b"i1e" if item else b"i0e"
        elif isinstance(item, int | float):
            buf += _bencode_number(float(item))
        elif isinstance(item, str):
            raw = utf8(item)
            buf += str(len(raw)).encode() + b":" + raw
        elif isinstance(item, list):
            buf += b"l"
            stack.append(b"e")
            stack.extend(reversed(item))
        else:
            buf += b"d"
            stack.append(b"e")
            pending: list[JsonValue | bytes] = []
            for key in sorted(item, key=_utf16_key):
                if item[key] is None:
                    continue
                raw_key = utf8(key)
                pending.append(str(len(raw_key)).encode() + b":" + raw_key)
                pending.append(item[key])
            stack.extend(reversed(pending))
    return bytes(buf)
