"""The one place where trio meets asyncio.

grpclib runs on asyncio; the node runs on trio. trio-asyncio hosts an asyncio
loop inside trio (``open_loop``), and every crossing goes through the helpers
here, so the rest of the code reads as plain trio (or plain grpclib handlers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, ParamSpec, TypeVar

import trio
import trio_asyncio
from grpclib.server import Server

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["Bridge", "SerialCaller", "from_trio", "open_loop", "serial_caller", "start_server",
           "stop_server"]


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


A = TypeVar("A")


class SerialCaller(Generic[A, T]):
    """Calls one trio coroutine function from asyncio, one call at a time, all in one
    trio task; see :func:`serial_caller`."""

    def __init__(self, send: trio.MemorySendChannel[tuple[A, asyncio.Future[T]]]) -> None:
        self._send = send

    async def __call__(self, arg: A) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        # Same thread: the asyncio loop runs inside a trio task, so handing the call to
        # the waiting trio task is a plain synchronous send, not a crossing.
        self._send.send_nowait((arg, future))
        return await future


@asynccontextmanager
async def serial_caller(fn: Callable[[A], Awaitable[T]]
                        ) -> AsyncIterator[SerialCaller[A, T]]:
    """From asyncio code, call trio's ``fn`` many times through one long-lived trio task.

    ``from_trio`` starts a trio task, a cancel scope and an asyncio future for every
    call: about 0.17 ms of CPU (``bench.bench_transport``), more than grpclib spends on
    a stream message. A stream handler that calls the node once per message (one call
    in flight) uses this instead: one task for the stream, and per call one send and
    one future. Calls must not overlap; a call's exception is raised to its caller.
    """
    send, receive = trio.open_memory_channel[tuple[A, "asyncio.Future[T]"]](1)

    async def serve() -> None:
        async with receive:
            async for arg, future in receive:
                if future.done():  # the caller was cancelled meanwhile
                    continue
                try:
                    result = await fn(arg)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                except BaseException:
                    if not future.done():
                        future.cancel()
                    raise
                else:
                    if not future.done():
                        future.set_result(result)

    worker: asyncio.Future[None] = trio_asyncio.trio_as_aio(serve)()  # starts it now
    try:
        with send:
            yield SerialCaller(send)
    finally:
        # The channel is closed: the task ends after the call in hand (if any).
        await worker


async def start_server(server: Server, **kwargs: Any) -> None:
    await trio_asyncio.aio_as_trio(server.start)(**kwargs)


async def stop_server(server: Server) -> None:
    server.close()
    await trio_asyncio.aio_as_trio(server.wait_closed)()
