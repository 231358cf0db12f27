"""Keep a service announced in Grape for as long as it runs (trio only)."""

from __future__ import annotations

import logging
import random
from typing import Final

import trio

from ._client import GrapeClient
from ._errors import GrapeClientError

__all__ = ["announce_forever"]

logger = logging.getLogger("grape_client")

# First retry delay after a failed announce; doubles per failure, capped at the
# announce interval.
_BACKOFF_BASE: Final = 0.5
_JITTER: Final = (0.8, 1.2)


async def announce_forever(
    client: GrapeClient,
    name: str,
    port: int,
    *,
    interval: float = 5.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Announce ``name`` on ``port`` now and then every ``interval`` seconds, until cancelled.

    Trio only: it sleeps with :func:`trio.sleep` and reports readiness through
    ``task_status``, so start it with ``await nursery.start(announce_forever,
    client, name, port)``. (The :class:`GrapeClient` itself also works under
    asyncio.)

    :meth:`~trio.Nursery.start` returns after the first attempt, whether it
    succeeded or not, so a caller is never held up by a grape that is down.
    Later announces follow every ``interval * uniform(0.8, 1.2)`` seconds; the
    jitter keeps many nodes from announcing in lock-step. Records of CLI
    grapes never expire, but re-announcing brings them back after a grape
    restarts (grape-http-api.md §6).

    A failed announce (:class:`GrapeClientError`: grape unreachable, or an error
    such as ``"All queries failed"``) is retried with exponential backoff from
    0.5 s, jittered and capped at ``interval``. One warning is logged when
    announces start failing and one info line when they succeed again, not one
    line per failure.

    Args:
        client: an open client.
        name: service name (non-empty).
        port: the service's port, 1-65535.
        interval: seconds between successful announces (positive).
        task_status: supplied by :meth:`trio.Nursery.start`.

    Raises:
        ValueError: bad ``name``, ``port`` or ``interval`` (before ``started()``).
        RuntimeError: the client was closed while announcing.
    """
    if not interval > 0:
        raise ValueError(f"interval must be positive, not {interval!r}")
    started = False
    failures = 0
    while True:
        try:
            await client.announce(name, port)
        except GrapeClientError as exc:
            failures += 1
            if failures == 1:
                logger.warning(
                    "announce %r:%d failing, retrying with backoff: %s", name, port, exc
                )
            nominal = _BACKOFF_BASE * 2.0 ** min(failures - 1, 30)
            delay = min(interval, nominal * random.uniform(*_JITTER))
        else:
            if failures:
                logger.info(
                    "announce %r:%d recovered after %d failed attempt%s",
                    name, port, failures, "" if failures == 1 else "s",
                )
            failures = 0
            delay = interval * random.uniform(*_JITTER)
        if not started:
            started = True
            task_status.started()
        await trio.sleep(delay)
