"""Strict, fast decoders for the two signed payloads: ``Event`` and ``Bid``, and the
varint reader and writer every encoder and decoder of the core shares.

Why not ``Event.parse``: betterproto2 0.10 is pure Python and costs about 35 µs per
``Event`` with an ``Accept`` (another 35 µs for the ``Bid`` inside), twice the cost of
the Ed25519 check itself, and it does not check wire types: ``Event.parse`` of junk can
return ``Open(item=1)``, an ``int`` in a ``str`` field. These decoders read only the
fields the ledger needs, straight from the signed bytes (DESIGN.md section 4: verify
and read the received bytes, never a re-serialization), in a few microseconds.

They follow the protobuf wire format (https://protobuf.dev/programming-guides/encoding/)
and are stricter than protobuf requires, because the bytes are signed by their author
and our own encoder (betterproto2) never produces the accepted-by-protobuf oddities:

- a known field with the wrong wire type, a string that is not UTF-8, a truncated
  varint or length, a varint longer than 10 bytes, a group, or field number 0 is an
  error;
- a known field that appears twice, or two members of the ``body`` oneof, is an error
  (protobuf would merge or keep the last; refusing avoids any doubt about meaning);
- unknown fields are skipped, so a later version can add fields.

Every failure raises :class:`WireError` (a ``ValueError``) with a readable reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "AcceptBody",
    "BidFields",
    "CloseBody",
    "EventFields",
    "OpenBody",
    "WireError",
    "decode_bid",
    "decode_event",
    "put_varint",
    "read_varint",
    "varint",
    "varint_size",
]

_VARINT: Final = 0
_I64: Final = 1
_LEN: Final = 2
_I32: Final = 5
_U64_LIMIT: Final = 1 << 64
_I64_SIGN: Final = 1 << 63


class WireError(ValueError):
    """The bytes are not a well-formed message of the expected type."""


@dataclass(frozen=True, slots=True)
class OpenBody:
    """``Event.open``: the raw values, validated by the ledger's rules.

    The terms after ``currency`` are optional on the wire; an ``Open`` written before
    they existed decodes with their defaults (no end, no increment, no reserve).
    """

    item: str
    start_amount: str
    currency: str
    ends_at_ms: int = 0
    extend_ms: int = 0
    min_increment: str = ""
    reserve: str = ""
    sealed_reserve: bytes = b""
    sealed_reserve_box: bytes = b""


@dataclass(frozen=True, slots=True)
class AcceptBody:
    """``Event.accept``: the bidder's ``SignedBid``, still as bytes."""

    bid: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class CloseBody:
    """``Event.close``: the auction id; ``present`` is False if the field was absent.

    ``reserve`` and ``reserve_key`` reveal a sealed reserve (empty: nothing revealed).
    """

    author: bytes
    seq: int
    present: bool
    reserve: str = ""
    reserve_key: bytes = b""


@dataclass(frozen=True, slots=True)
class EventFields:
    """The fields of one ``Event``; ``body`` is None when no oneof member was set."""

    author: bytes
    seq: int
    prev: bytes
    time_ms: int
    author_name: str
    body: OpenBody | AcceptBody | CloseBody | None


@dataclass(frozen=True, slots=True)
class BidFields:
    """The fields of one ``Bid``; ``has_auction`` is False if ``auction`` was absent."""

    auction_author: bytes
    auction_seq: int
    has_auction: bool
    bidder: bytes
    bidder_name: str
    amount: str
    currency: str
    nonce: int
    time_ms: int


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read one varint at ``pos``; returns (value, position after it)."""
    if pos >= end:
        raise WireError("truncated varint")
    b = buf[pos]
    if b < 0x80:  # the common case: one byte
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")
    if result >= _U64_LIMIT:
        raise WireError("varint exceeds 64 bits")
    return result, pos


#: Public name for the envelope codec (``peer.core.envelopes``), which shares this reader.
read_varint = _varint


def put_varint(out: bytearray, value: int) -> None:
    """Append ``value`` (0 to 2**64 - 1) to ``out`` as a varint: the one varint writer.

    Appending in place is the fast form for encoders that build one ``bytearray``;
    :func:`varint` gives the bytes on their own.
    """
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def varint(value: int) -> bytes:
    """``value`` as varint bytes (field keys made once, benchmarks, tests)."""
    out = bytearray()
    put_varint(out, value)
    return bytes(out)


def varint_size(value: int) -> int:
    """How many bytes :func:`put_varint` writes for ``value``."""
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def _scan(buf: bytes, pos: int, end: int, types: tuple[int, ...]) -> list[int]:
    """Read one message in a single pass, keeping the fields listed in ``types``.

    ``types[n]`` is the wire type expected for field ``n`` (-1: not one of ours).
    Returns a list where, for each known field ``n``, item ``2n`` is the varint value
    (or the payload start of a length-delimited field) and item ``2n + 1`` the payload
    end; -1 in item ``2n`` means the field was absent. One flat loop with the
    one-byte cases inline: this is the hot path of every ``Ledger.apply``.
    """
    known = len(types)
    out = [-1] * (2 * known)
    while pos < end:
        key = buf[pos]
        pos += 1
        if key >= 0x80:
            key, pos = _varint(buf, pos - 1, end)
        number = key >> 3
        wire_type = key & 7
        if number == 0:
            raise WireError("field number 0")
        stop = 0
        if wire_type == _VARINT:
            if pos >= end:
                raise WireError(f"field {number}: truncated varint")
            value = buf[pos]
            pos += 1
            if value >= 0x80:
                value, pos = _varint(buf, pos - 1, end)
        elif wire_type == _LEN:
            if pos >= end:
                raise WireError(f"field {number}: truncated length")
            length = buf[pos]
            pos += 1
            if length >= 0x80:
                length, pos = _varint(buf, pos - 1, end)
            value = pos
            stop = pos + length
            if stop > end:
                raise WireError(f"field {number}: length {length} runs past the end")
            pos = stop
        elif wire_type in (_I64, _I32):
            value = pos
            pos += 8 if wire_type == _I64 else 4
            if pos > end:
                raise WireError(f"field {number}: truncated fixed-width value")
        else:
            raise WireError(f"field {number}: unsupported wire type {wire_type}")
        if number < known:
            expected = types[number]
            if expected >= 0:
                if wire_type != expected:
                    raise WireError(f"field {number}: wire type {wire_type},"
                                    f" expected {expected}")
                if out[2 * number] != -1:
                    raise WireError(f"field {number} appears more than once")
                out[2 * number] = value
                out[2 * number + 1] = stop
    return out


def _text(buf: bytes, f: list[int], number: int) -> str:
    start = f[2 * number]
    if start < 0:
        return ""
    try:
        return buf[start:f[2 * number + 1]].decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"field {number}: string is not valid UTF-8") from None


def _bytes(buf: bytes, f: list[int], number: int) -> bytes:
    start = f[2 * number]
    return buf[start:f[2 * number + 1]] if start >= 0 else b""


def _uint(f: list[int], number: int) -> int:
    value = f[2 * number]
    return value if value >= 0 else 0


def _int64(value: int) -> int:
    # int64 is sent as its two's complement in 64 bits (10 varint bytes if negative).
    return value - _U64_LIMIT if value >= _I64_SIGN else value


_N: Final = -1
# Expected wire type per field number (index), -1 for numbers we do not read.
_AUCTION_ID_TYPES: Final = (_N, _LEN, _VARINT)
_OPEN_TYPES: Final = (_N, _LEN, _LEN, _LEN, _VARINT, _VARINT, _LEN, _LEN, _LEN, _LEN)
_CLOSE_TYPES: Final = (_N, _LEN, _LEN, _LEN)
_ONE_MESSAGE_TYPES: Final = (_N, _LEN)  # Accept {SignedBid bid = 1}, Close {AuctionId = 1}
_SIGNED_BID_TYPES: Final = (_N, _LEN, _LEN)
_BID_TYPES: Final = (_N, _LEN, _LEN, _LEN, _LEN, _LEN, _VARINT, _VARINT)
_EVENT_TYPES: Final = (_N, _LEN, _VARINT, _LEN, _VARINT, _LEN, _N, _N, _N, _N, _LEN, _LEN,
                       _LEN)


def _auction_id(buf: bytes, start: int, stop: int) -> tuple[bytes, int]:
    f = _scan(buf, start, stop, _AUCTION_ID_TYPES)
    return _bytes(buf, f, 1), _uint(f, 2)


def decode_event(data: bytes) -> EventFields:
    """Decode a serialized ``Event``.

    Args:
        data: The exact ``SignedEvent.event`` bytes.

    Returns:
        The decoded fields (proto3 defaults for absent scalars).

    Raises:
        WireError: The bytes are not a well-formed ``Event`` (see the module docstring).
    """
    f = _scan(data, 0, len(data), _EVENT_TYPES)
    body: OpenBody | AcceptBody | CloseBody | None = None
    if f[20] >= 0:
        o = _scan(data, f[20], f[21], _OPEN_TYPES)
        body = OpenBody(_text(data, o, 1), _text(data, o, 2), _text(data, o, 3),
                        _int64(_uint(o, 4)), _int64(_uint(o, 5)), _text(data, o, 6),
                        _text(data, o, 7), _bytes(data, o, 8), _bytes(data, o, 9))
    if f[22] >= 0:
        if body is not None:
            raise WireError("more than one body (open/accept/close) is set")
        a = _scan(data, f[22], f[23], _ONE_MESSAGE_TYPES)
        if a[2] >= 0:
            sb = _scan(data, a[2], a[3], _SIGNED_BID_TYPES)
            body = AcceptBody(_bytes(data, sb, 1), _bytes(data, sb, 2))
        else:
            body = AcceptBody(b"", b"")
    if f[24] >= 0:
        if body is not None:
            raise WireError("more than one body (open/accept/close) is set")
        c = _scan(data, f[24], f[25], _CLOSE_TYPES)
        reserve, reserve_key = _text(data, c, 2), _bytes(data, c, 3)
        if c[2] >= 0:
            author, seq = _auction_id(data, c[2], c[3])
            body = CloseBody(author, seq, True, reserve, reserve_key)
        else:
            body = CloseBody(b"", 0, False, reserve, reserve_key)
    return EventFields(_bytes(data, f, 1), _uint(f, 2), _bytes(data, f, 3),
                       _int64(_uint(f, 4)), _text(data, f, 5), body)


def decode_bid(data: bytes) -> BidFields:
    """Decode a serialized ``Bid`` (the ``SignedBid.bid`` bytes).

    Raises:
        WireError: The bytes are not a well-formed ``Bid``.
    """
    f = _scan(data, 0, len(data), _BID_TYPES)
    has_auction = f[2] >= 0
    auction_author, auction_seq = _auction_id(data, f[2], f[3]) if has_auction else (b"", 0)
    return BidFields(auction_author, auction_seq, has_auction, _bytes(data, f, 2),
                     _text(data, f, 3), _text(data, f, 4), _text(data, f, 5), _uint(f, 6),
                     _int64(_uint(f, 7)))
