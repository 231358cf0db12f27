"""Exceptions raised by :class:`grape_client.GrapeClient`.

The hierarchy, in the manner of ``httpx/_exceptions.py``::

    GrapeClientError               anything that went wrong talking to Grape
    ├── GrapeError                 a grape answered, but with an error (or nonsense)
    └── GrapeUnavailable           no grape URL answered at all

httpx exceptions never reach callers: transport failures are re-raised as
:class:`GrapeUnavailable` ``from`` the httpx exception, as httpx's own
``map_httpcore_exceptions`` does for httpcore.

Programming errors are not :class:`GrapeClientError`: invalid arguments raise
:class:`ValueError` and using a closed client raises :class:`RuntimeError`.
"""

from __future__ import annotations

__all__ = ["GrapeClientError", "GrapeError", "GrapeUnavailable"]

# Long bodies (a misdirected request answered by some other web server) are cut
# in str(exc); the .code attribute keeps the full text.
_MAX_SHOWN = 200


class GrapeClientError(Exception):
    """Base class of every error :class:`~grape_client.GrapeClient` raises on purpose."""


class GrapeError(GrapeClientError):
    """A grape answered the request, but not with a usable result.

    ``code`` is the grape's own message, exactly as sent (grape-http-api.md §1):

    * for a 200 whose body is a JSON string, the decoded string, e.g.
      ``"ERR_GRAPE_LOOKUP"``, ``"All queries failed"``, ``"opts.v not given"``;
    * for any other status (500, 413, ...), the body as text, e.g.
      ``"ERR_GRAPE_PAYLOAD_INVALID"`` or a JavaScript ``TypeError`` message;
    * for a 200 whose body is not the shape the endpoint returns (not JSON, a
      list where a number was expected, ...), the body as text.

    Attributes:
        code: the grape's message (see above).
        status: the HTTP status of the reply.
        endpoint: the endpoint that was called, e.g. ``"lookup"``.
        url: the base URL of the grape that answered.
    """

    def __init__(self, code: str, *, status: int = 200, endpoint: str = "", url: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.endpoint = endpoint
        self.url = url

    def __str__(self) -> str:
        shown = self.code if len(self.code) <= _MAX_SHOWN else self.code[:_MAX_SHOWN] + "..."
        where = f"/{self.endpoint} on {self.url}" if self.endpoint or self.url else "grape"
        return f"{where} answered {self.status}: {shown!r}"


class GrapeUnavailable(GrapeClientError):
    """No grape URL answered (connection refused, reset, timed out, ...).

    Raised ``from`` the last httpx exception; the message names every URL that
    was tried and why it failed.
    """
