"""The CLI's side of the Control service: one call over a node's Unix socket.

The CLI is a short-lived process with nothing else to do, so it runs grpclib on
plain asyncio (``asyncio.run``); only the node needs trio. Failures are sorted
into what the user can act on: no node there (``NodeUnreachable``), the node went
away mid-call, so the outcome is unknown (``NodeLost``), or the node answered with
an error (``NodeError``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.exceptions import StreamTerminatedError

from peer.gen.auction.v1 import ControlStub
from peer.net.control_socket import NoControlSocket, check_before_talking

__all__ = ["CALL_TIMEOUT", "NodeError", "NodeLost", "NodeUnreachable", "call", "stream"]

T = TypeVar("T")

#: A bid goes to the seller's node and back; loopback answers in milliseconds,
#: so this only bounds a node that hangs.
CALL_TIMEOUT = 30.0


class NodeUnreachable(Exception):
    """No node answers on the control socket (not running, or another data dir)."""


class NodeLost(Exception):
    """The node was reached but the call ended without a reply (the node died or hung).

    The request may have been carried out: whoever changed something must check.
    """


class NodeError(Exception):
    """The node answered the call with a gRPC error instead of a reply."""


@asynccontextmanager
async def _stub(socket_path: Path) -> AsyncIterator[ControlStub]:
    channel = Channel(path=str(socket_path))
    try:
        yield ControlStub(channel)
    finally:
        channel.close()


async def _guarded(awaitable: Awaitable[T], socket_path: Path) -> T:
    try:
        return await awaitable
    except GRPCError as exc:
        raise NodeError(f"{exc.status.name}: {exc.message}") from exc
    except TimeoutError as exc:  # before OSError, its base class
        raise NodeLost(f"no answer within {CALL_TIMEOUT:g} s") from exc
    except OSError as exc:
        # Raised by the connect: nothing reached a node.
        raise NodeUnreachable(f"{socket_path}: {exc or type(exc).__name__}") from exc
    except StreamTerminatedError as exc:
        raise NodeLost(str(exc) or "connection lost") from exc
    except Exception as exc:
        # Whatever else the connection ends in (an HTTP/2 or gRPC protocol error from
        # something that is not a node): connected, so the request may have arrived.
        raise NodeLost(f"{type(exc).__name__}: {exc}") from exc


def _require_socket(socket_path: Path) -> None:
    # A clearer message than grpclib's connection error for the common case, and
    # never a word to a socket another user made (ControlSocketError goes up).
    try:
        check_before_talking(socket_path)
    except NoControlSocket as exc:
        raise NodeUnreachable(str(exc)) from None


def call(socket_path: Path, fn: Callable[[ControlStub], Awaitable[T]]) -> T:
    """Run one unary Control call to the node listening on ``socket_path``."""

    _require_socket(socket_path)

    async def main() -> T:
        async with _stub(socket_path) as stub:
            return await _guarded(fn(stub), socket_path)

    return asyncio.run(main())


def stream(socket_path: Path, fn: Callable[[ControlStub], AsyncIterator[T]],
           on_item: Callable[[T], None]) -> None:
    """Follow a server stream (``watch``) until the node ends it."""

    _require_socket(socket_path)

    async def main() -> None:
        async with _stub(socket_path) as stub:

            async def pump() -> None:
                async for item in fn(stub):
                    on_item(item)

            await _guarded(pump(), socket_path)

    asyncio.run(main())
