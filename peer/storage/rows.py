"""One row of the event log: its columns, its CRC-32, and the SQL that reads and writes it.

SQLite has no page checksums, so ``PRAGMA quick_check`` cannot see damage inside a
row's bytes; the per-row CRC over ``(author, seq, data, signature)`` and their lengths
turns such damage into :class:`~peer.storage.store_errors.StoreCorrupt` when it is read.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

from peer.storage.store_errors import StoreCorrupt

# A result row as sqlite3 returns it; the SQL, not the type system, fixes its shape.
Row = tuple[Any, ...]


#: One checked row of an author's log without the author: ``(seq, data, signature)``.
RawEvent = tuple[int, bytes, bytes]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the log: opaque to the store.

    Attributes:
        author: The node id of the log's owner.
        seq: Position in the author's log (1, 2, 3, ...).
        data: The ``SignedEvent.event`` bytes, exactly as signed.
        signature: The ``SignedEvent.signature`` bytes.
    """

    author: bytes
    seq: int
    data: bytes
    signature: bytes

    def __post_init__(self) -> None:
        # Checked here so a bad row fails in the caller's task, not inside a
        # group-committed transaction that also holds other callers' events.
        # One expression for the common, valid row (a sync builds one per event);
        # the loop below only runs to say what is wrong.
        seq = self.seq
        if (type(self.author) is bytes and type(self.data) is bytes
                and type(self.signature) is bytes and type(seq) is int
                and 0 <= seq <= MAX_SEQ):
            return
        for name in ("author", "data", "signature"):
            if not isinstance(getattr(self, name), bytes):
                raise TypeError(f"StoredEvent.{name} must be bytes")
        if not isinstance(self.seq, int) or isinstance(self.seq, bool):
            raise TypeError("StoredEvent.seq must be an int")
        if not 0 <= self.seq <= MAX_SEQ:
            raise ValueError(f"StoredEvent.seq out of range: {self.seq}")


MAX_SEQ: Final = 2**63 - 1  # SQLite INTEGER is a signed 64-bit value


INSERT_EVENT_SQL: Final = (
    "INSERT OR IGNORE INTO events (author, seq, data, signature, crc) VALUES (?, ?, ?, ?, ?)"
)


UPSERT_META_SQL: Final = (
    "INSERT INTO meta (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


EVENT_COLUMNS: Final = "author, seq, data, signature, crc"


# Lengths go into the checksum so that bytes shifted between fields are caught too.
_CRC_PREFIX: Final = struct.Struct(">QIII")


HEADS_SQL: Final = "SELECT author, MAX(seq) FROM events GROUP BY author"


RANGE_SQL: Final = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE author = ? AND seq > ? ORDER BY seq LIMIT ?"
)


def range_args(author: bytes, after_seq: int, limit: int) -> tuple[object, ...]:
    if limit < 1:
        raise ValueError("limit must be positive")
    # Clamp so an absurd seq from a peer's heads is "nothing after it", not an
    # OverflowError from the sqlite3 binding.
    return (author, max(-1, min(after_seq, MAX_SEQ)), limit)


def _crc(author: bytes, seq: int, data: bytes, signature: bytes) -> int:
    # One crc32 over the concatenation: the same value as feeding the parts in turn
    # (as earlier versions did, so stored rows still match), for one call instead of four.
    return zlib.crc32(b"".join((_CRC_PREFIX.pack(seq, len(author), len(data), len(signature)),
                                author, data, signature)))


def checksum(event: StoredEvent) -> int:
    return _crc(event.author, event.seq, event.data, event.signature)


def decode_row(row: Row, path: Path) -> StoredEvent:
    """A row of ``EVENT_COLUMNS`` as a StoredEvent, or StoreCorrupt if it was damaged."""
    author, seq, data, signature, crc = row
    # A sound row passes in one expression (every row of a rebuild or a Sync page
    # comes here); :func:`_damaged` says what is wrong with the others.
    if (type(author) is bytes and type(data) is bytes and type(signature) is bytes
            and type(seq) is int and 0 <= seq <= MAX_SEQ
            and _crc(author, seq, data, signature) == crc):
        return StoredEvent(author, seq, data, signature)
    _damaged(row, path)


def decode_raw_row(row: Row, path: Path) -> RawEvent:
    """:func:`decode_row` without building a StoredEvent: ``(seq, data, signature)``."""
    author, seq, data, signature, crc = row
    if (type(author) is bytes and type(data) is bytes and type(signature) is bytes
            and type(seq) is int and 0 <= seq <= MAX_SEQ
            and _crc(author, seq, data, signature) == crc):
        return seq, data, signature
    _damaged(row, path)


def _damaged(row: Row, path: Path) -> NoReturn:
    """Raise StoreCorrupt for a row that failed :func:`decode_row`'s checks, saying why."""
    author, seq, data, signature, _ = row
    try:
        StoredEvent(author, seq, data, signature)
    except (TypeError, ValueError) as exc:
        # A damaged record header can turn a BLOB into some other type.
        raise StoreCorrupt(f"{path}: a stored event is unreadable ({exc}); the file is"
                           f" damaged") from None
    raise StoreCorrupt(f"{path}: the stored event (author {author.hex()}, seq {seq})"
                       f" fails its checksum; the file is damaged")
