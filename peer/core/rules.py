"""Rejections and the stateless input rules: amounts, items, currencies, names.

Split out of :mod:`peer.core.ledger` so the CLI can check a price without the ledger,
and so the ledger module holds only the state machine. Everything here is pure.

Amounts (DESIGN.md section 4) are ``decimal.Decimal``, never float. The accepted
text is deliberately narrow, because ``Decimal()`` itself accepts far more than a
price: ``"1_000"``, ``"1e3"``, ``"NaN"``, ``"-0"``, non-ASCII digits (``"٧٥"``) and
surrounding spaces. Only ``DIGITS[.DIGITS]`` in ASCII is a price here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from peer.gen.auction.v1 import RejectCode

__all__ = [
    "MAX_AMOUNT_CHARS",
    "MAX_AMOUNT_DECIMALS",
    "MAX_AMOUNT_INTEGER_DIGITS",
    "MAX_CURRENCY_CHARS",
    "MAX_ITEM_CHARS",
    "MAX_NAME_CHARS",
    "Rejection",
    "check_currency",
    "check_item",
    "check_name",
    "format_amount",
    "format_duration",
    "format_time",
    "parse_amount",
    "parse_duration",
]

MAX_AMOUNT_CHARS: Final = 30
MAX_AMOUNT_DECIMALS: Final = 6  # micro-units: enough for USDt (6 decimals on chain)
MAX_AMOUNT_INTEGER_DIGITS: Final = 18  # below 10**18: no one bids a quintillion
MAX_ITEM_CHARS: Final = 100
MAX_CURRENCY_CHARS: Final = 12
MAX_NAME_CHARS: Final = 64

_AMOUNT: Final = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
_CURRENCY: Final = re.compile(r"[A-Za-z0-9]+")
_DURATION_PART: Final = re.compile(r"([0-9]{1,9})(ms|d|h|m|s)")
_DURATION_UNITS_MS: Final = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why something was refused: a wire code and a readable reason.

    Attributes:
        code: The ``RejectCode`` (as on the wire).
        reason: A readable detail, e.g. ``"best is 80 USDt by Client#2"``; may be empty.
    """

    code: RejectCode
    reason: str

    @property
    def code_name(self) -> str:
        """The code's name without the ``REJECT_CODE_`` prefix, e.g. ``"BID_TOO_LOW"``."""
        try:
            return RejectCode(self.code).name or str(int(self.code))
        except ValueError:  # a code from a newer peer that this version does not know
            return str(int(self.code))

    def __str__(self) -> str:
        return f"{self.code_name} ({self.reason})" if self.reason else self.code_name


def parse_amount(text: str) -> Decimal | Rejection:
    """Parse a price such as ``"75"`` or ``"75.5"``.

    Returns:
        The amount, or a ``BAD_AMOUNT`` rejection saying what is wrong.
    """
    if not isinstance(text, str) or not text:
        return Rejection(RejectCode.BAD_AMOUNT, "no amount given")
    if len(text) > MAX_AMOUNT_CHARS:
        return Rejection(RejectCode.BAD_AMOUNT,
                         f"amount is longer than {MAX_AMOUNT_CHARS} characters")
    match = _AMOUNT.fullmatch(text)
    if match is None:
        return Rejection(RejectCode.BAD_AMOUNT,
                         f"{text!r} is not a plain decimal number like 75 or 75.5")
    whole, fraction = match.groups()
    if fraction is not None and len(fraction) > MAX_AMOUNT_DECIMALS:
        return Rejection(RejectCode.BAD_AMOUNT,
                         f"{text} has more than {MAX_AMOUNT_DECIMALS} decimal places")
    if len(whole.lstrip("0")) > MAX_AMOUNT_INTEGER_DIGITS:
        return Rejection(RejectCode.BAD_AMOUNT,
                         f"{text} is too large (at most {MAX_AMOUNT_INTEGER_DIGITS} digits"
                         f" before the point)")
    amount = Decimal(text)
    if amount <= 0:
        return Rejection(RejectCode.BAD_AMOUNT, f"{text} is not greater than 0")
    return amount


def format_amount(amount: Decimal) -> str:
    """The canonical text of an amount: no exponent, no trailing zeros ("80", "75.5")."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def check_item(item: str) -> Rejection | None:
    """``BAD_ITEM`` unless ``item`` is 1..100 printable characters, already trimmed."""
    if not item or not item.strip():
        return Rejection(RejectCode.BAD_ITEM, "the item name is empty")
    if len(item) > MAX_ITEM_CHARS:
        return Rejection(RejectCode.BAD_ITEM,
                         f"the item name is longer than {MAX_ITEM_CHARS} characters")
    if not item.isprintable():
        return Rejection(RejectCode.BAD_ITEM,
                         "the item name contains control or non-printable characters")
    if item != item.strip():
        return Rejection(RejectCode.BAD_ITEM, "the item name starts or ends with spaces")
    return None


def check_currency(currency: str) -> Rejection | None:
    """``BAD_CURRENCY`` unless ``currency`` is 1..12 ASCII letters or digits ("USDt")."""
    if not currency:
        return Rejection(RejectCode.BAD_CURRENCY, "no currency given")
    if len(currency) > MAX_CURRENCY_CHARS:
        return Rejection(RejectCode.BAD_CURRENCY,
                         f"the currency is longer than {MAX_CURRENCY_CHARS} characters")
    if _CURRENCY.fullmatch(currency) is None:
        return Rejection(RejectCode.BAD_CURRENCY,
                         f"the currency {currency!r} is not only ASCII letters and digits")
    return None


def check_name(name: str) -> str | None:
    """Why a node's display name is unacceptable, or None.

    Names travel in every event and bid and end up in other people's terminals,
    hence printable only (no escape sequences), 1..64 characters.
    """
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"the name is longer than {MAX_NAME_CHARS} characters"
    if not name.isprintable():
        return "the name contains control or non-printable characters"
    return None


def parse_duration(text: str) -> int | str:
    """A duration such as ``30s``, ``10m``, ``1h30m``, ``1d`` or ``500ms``, in ms.

    Returns:
        The milliseconds (at least 1), or why the text is not a duration.
    """
    text = text.strip().lower()
    if not text or len(text) > 40:
        return f"{text!r} is not a duration like 30s, 10m or 1h30m"
    total, pos = 0, 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            return f"{text!r} is not a duration like 30s, 10m or 1h30m"
        total += int(match.group(1)) * _DURATION_UNITS_MS[match.group(2)]
        pos = match.end()
    if total <= 0:
        return f"{text!r} is not longer than zero"
    return total


def format_duration(ms: int) -> str:
    """``90000`` -> ``"1m30s"``; fractions of a second as ``"1.5s"``."""
    if ms < 1000:
        return f"{ms}ms"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    if ms:
        parts.append(f"{ms / 1000:g}s")
    return "".join(parts)


def format_time(ms: int) -> str:
    """A wall-clock time in ms since the epoch, as ``"2026-12-24 18:00:00 UTC"``.

    Pure (no local time zone): every node renders an auction's end the same way.
    """
    try:
        moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms since the epoch"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
