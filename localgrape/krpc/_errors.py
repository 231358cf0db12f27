"""Typed errors for the KRPC layer.

Malformed input never escapes as an arbitrary exception: the codec raises
:class:`KrpcError` with a :class:`DropReason`, and for queries optionally the
error reply (``[code, message]``, BEP 5 "Errors") that a node should send back.
Remote failures of our own queries are :class:`KrpcRemoteError` and
:class:`KrpcTimeout`.
"""

from __future__ import annotations

import enum

__all__ = [
    "CAS_MISMATCH",
    "GENERIC_ERROR",
    "INVALID_SIGNATURE",
    "MESSAGE_TOO_BIG",
    "METHOD_UNKNOWN",
    "PROTOCOL_ERROR",
    "SALT_TOO_BIG",
    "SEQ_LESS_THAN_CURRENT",
    "SERVER_ERROR",
    "VERIFICATION_NOT_SUPPORTED",
    "DropReason",
    "KrpcError",
    "KrpcQueryError",
    "KrpcRemoteError",
    "KrpcTimeout",
]

# BEP 5, "Errors": 201 generic, 202 server, 203 protocol, 204 method unknown.
GENERIC_ERROR = 201
SERVER_ERROR = 202
PROTOCOL_ERROR = 203
METHOD_UNKNOWN = 204
# BEP 44, "Errors": 205 message (v) too big, 206 invalid signature, 207 salt too
# big, 301 CAS mismatch, 302 sequence number less than current.
MESSAGE_TOO_BIG = 205
INVALID_SIGNATURE = 206
SALT_TOO_BIG = 207
CAS_MISMATCH = 301
SEQ_LESS_THAN_CURRENT = 302
# bittorrent-dht client.js `_onput`: a node without a `verify` function answers
# every mutable put with [400, 'verification not supported'] (the CLI grape).
VERIFICATION_NOT_SUPPORTED = 400


class DropReason(enum.StrEnum):
    """Why an incoming datagram was not (fully) processed."""

    TOO_LARGE = "too_large"
    BAD_BENCODE = "bad_bencode"
    NOT_A_DICT = "not_a_dict"
    BAD_TRANSACTION_ID = "bad_transaction_id"
    BAD_TYPE = "bad_type"
    BAD_METHOD = "bad_method"
    UNKNOWN_METHOD = "unknown_method"
    BAD_ARGUMENTS = "bad_arguments"
    BAD_RESPONSE = "bad_response"
    BAD_ERROR = "bad_error"
    BAD_EXTENSION = "bad_extension"
    BAD_TOKEN = "bad_token"
    REJECTED = "rejected"
    RATE_LIMITED = "rate_limited"
    UNEXPECTED_RESPONSE = "unexpected_response"
    BAD_SOURCE = "bad_source"


class KrpcError(Exception):
    """A datagram that could not be accepted.

    Attributes:
        reason: the machine-readable drop reason.
        detail: human-readable detail, for logs only.
        transaction_id: the ``t`` of the offending message if it could be read.
        reply: for queries, the ``(code, message)`` error to answer with, or
            None to drop silently (as bittorrent-dht does for many bad queries).
    """

    def __init__(self, reason: DropReason, detail: str = "", *,
                 transaction_id: bytes | None = None,
                 reply: tuple[int, str] | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        self.transaction_id = transaction_id
        self.reply = reply


class KrpcQueryError(Exception):
    """Base class for failures of a query that this node sent."""


class KrpcRemoteError(KrpcQueryError):
    """The remote node answered with a KRPC error (``y = e``).

    Attributes:
        code: the numeric error code (e.g. 203).
        message: the error text.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class KrpcTimeout(KrpcQueryError):
    """No valid answer arrived within the query timeout."""
