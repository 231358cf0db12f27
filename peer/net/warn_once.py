"""Log a WARNING once per key (an address), then DEBUG: a peer that keeps failing the
same way is worth one line, not one per retry. Bounded: the oldest keys are forgotten
beyond ``limit``, so a flood of addresses cannot grow it."""

from __future__ import annotations

import logging
from collections import OrderedDict

__all__ = ["WARNED_KEYS", "WarnOnce"]

WARNED_KEYS = 1024


class WarnOnce:
    def __init__(self, logger: logging.Logger, limit: int = WARNED_KEYS) -> None:
        self._log = logger
        self._limit = limit
        self._warned: OrderedDict[str, None] = OrderedDict()

    def warn(self, key: str, message: str, *args: object) -> None:
        if key in self._warned:
            self._warned.move_to_end(key)
            self._log.debug(message, *args)
            return
        self._warned[key] = None
        while len(self._warned) > self._limit:
            self._warned.popitem(last=False)
        self._log.warning(message, *args)

    def forget(self, key: str) -> None:
        """``key`` behaves again: its next failure is worth a WARNING."""
        self._warned.pop(key, None)
