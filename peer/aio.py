"""The one place where trio meets asyncio.

grpclib runs on asyncio; the node runs on trio. trio-asyncio hosts an asyncio
loop inside trio (``open_loop``), and every crossing goes through the helpers
here, so the rest of the code reads as plain trio (or plain grpclib handlers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, ParamSpec, TypeVar

import trio_asyncio
from grpclib.server import Server

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["Bridge", "from_trio", "open_loop", "start_server", "stop_server"]


def open_loop() -> AbstractAsyncContextManager[Any]:
    """An asyncio loop inside the current trio task (one per node); yields the loop."""
    cm: AbstractAsyncContextManager[Any] = trio_asyncio.open_loop()
    return cm


class Bridge:
    """Calls from trio into one node's asyncio loop.

    The loop is named explicitly rather than taken from trio-asyncio's context
    variable: a node's methods may be called from a trio task outside that
    node's ``open_loop`` block (the demo and benchmarks run several nodes in one
    process and drive them directly), where the context holds no loop or
    another node's.
    """

    def __init__(self, loop: Any) -> None:
        self.loop = loop

    async def to_trio(self, fn: Callable[P, Awaitable[T]], *args: P.args,
                      **kwargs: P.kwargs) -> T:
        """Call an asyncio coroutine function (a grpclib stub method) from trio."""
        result: T = await trio_asyncio.aio_as_trio(fn, loop=self.loop)(*args, **kwargs)
        return result

    async def collect_stream(self, stream: Callable[[], AsyncIterator[T]],
                             on_item: Callable[[T], Awaitable[None]]) -> None:
        """Drive an asyncio async iterator (a grpclib server stream) from trio.

        ``on_item`` is a trio coroutine function, called for each item in order,
        so back-pressure reaches the sender.
        """

        async def pump() -> None:
            async for item in stream():
                await trio_asyncio.trio_as_aio(on_item, loop=self.loop)(item)

        await trio_asyncio.aio_as_trio(pump, loop=self.loop)()


async def from_trio(fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call a trio coroutine function from asyncio code (a grpclib handler)."""
    result: T = await trio_asyncio.trio_as_aio(fn)(*args, **kwargs)
    return result


async def start_server(server: Server, **kwargs: Any) -> None:
    await trio_asyncio.aio_as_trio(server.start)(**kwargs)


async def stop_server(server: Server) -> None:
    server.close()
    await trio_asyncio.aio_as_trio(server.wait_closed)()
