"""BEP 5 write tokens from a rotating secret; pure (time is an argument).

A token is ``SHA-1(requester_ip || secret)``, exactly bittorrent-dht
``_generateToken`` (client.js: ``this._hash(Buffer.concat([Buffer.from(host),
secret]))`` with a 20-byte random secret). The secret rotates every
``rotate_interval`` seconds (``ROTATE_INTERVAL`` = 5 min) and a token is valid
for the current and the previous secret (``_validateToken``), i.e. for 5 to 10
minutes, as BEP 5 recommends.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

__all__ = ["ROTATE_INTERVAL", "TokenManager"]

ROTATE_INTERVAL: float = 5 * 60.0
"""bittorrent-dht client.js ``ROTATE_INTERVAL``."""
SECRET_LENGTH = 20


class TokenManager:
    """Issue and check ``announce_peer`` / ``put`` tokens.

    Args:
        now: the creation time (seconds, any monotonic clock).
        rotate_interval: seconds between secret rotations.
        random_bytes: source of secrets (``os.urandom``; inject for tests).
    """

    def __init__(self, now: float, *, rotate_interval: float = ROTATE_INTERVAL,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if rotate_interval <= 0:
            raise ValueError("rotate_interval must be positive")
        self._random = random_bytes
        self._interval = rotate_interval
        self._secrets = (random_bytes(SECRET_LENGTH), random_bytes(SECRET_LENGTH))
        self._next_rotation = now + rotate_interval

    def _rotate(self, now: float) -> None:
        while now >= self._next_rotation:
            elapsed = int((now - self._next_rotation) // self._interval) + 1
            if elapsed >= 2:
                # Both secrets are stale: skip the intermediate rotations.
                self._secrets = (self._random(SECRET_LENGTH), self._random(SECRET_LENGTH))
            else:
                self._secrets = (self._random(SECRET_LENGTH), self._secrets[0])
            self._next_rotation += elapsed * self._interval

    @staticmethod
    def _token(ip: str, secret: bytes) -> bytes:
        return hashlib.sha1(ip.encode("utf-8") + secret).digest()

    def generate(self, ip: str, now: float) -> bytes:
        """The token to hand to ``ip`` in a ``get_peers``/``get`` answer."""
        self._rotate(now)
        return self._token(ip, self._secrets[0])

    def validate(self, ip: str, token: bytes, now: float) -> bool:
        """True if ``token`` was issued to ``ip`` under the current or previous secret."""
        self._rotate(now)
        return any(hmac.compare_digest(token, self._token(ip, s)) for s in self._secrets)
