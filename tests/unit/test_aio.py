"""peer.net.aio.serial_caller: asyncio code calling trio through one long-lived trio task."""

from __future__ import annotations

import asyncio

import pytest
import trio
import trio_asyncio

from peer.net import aio


async def test_calls_run_in_order_in_one_trio_task_and_errors_reach_the_caller() -> None:
    tasks: set[object] = set()
    seen: list[int] = []

    async def double(n: int) -> int:
        await trio.lowlevel.checkpoint()  # a trio checkpoint: this runs on the trio side
        tasks.add(trio.lowlevel.current_task())
        seen.append(n)
        if n < 0:
            raise ValueError(f"negative: {n}")
        return 2 * n

    async def from_asyncio() -> list[object]:
        results: list[object] = []
        async with aio.serial_caller(double) as call:
            for n in (1, 2, -3, 4):
                try:
                    results.append(await call(n))
                except ValueError as exc:
                    results.append(str(exc))
        return results

    async with aio.open_loop():
        results = await trio_asyncio.aio_as_trio(from_asyncio)()
    assert results == [2, 4, "negative: -3", 8]
    assert seen == [1, 2, -3, 4]
    assert len(tasks) == 1


async def test_a_cancelled_caller_leaves_the_next_call_working() -> None:
    release = trio.Event()
    started = trio.Event()
    finished: list[str] = []

    async def slow(label: str) -> str:
        if label == "slow":
            started.set()
            await release.wait()
        finished.append(label)
        return label

    async def from_asyncio() -> str:
        async with aio.serial_caller(slow) as call:
            first = asyncio.ensure_future(call("slow"))
            await trio_asyncio.trio_as_aio(started.wait)()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            release.set()
            return await call("next")

    async with aio.open_loop():
        with trio.fail_after(5):
            assert await trio_asyncio.aio_as_trio(from_asyncio)() == "next"
    # The call in hand when its caller left still ran to the end (nothing half-done).
    assert finished == ["slow", "next"]
