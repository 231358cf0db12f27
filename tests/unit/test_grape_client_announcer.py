"""announce_forever in virtual time (autojump_clock) against a scripted grape outage."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise

import httpx
import pytest
import trio
import trio.testing

from grape_client import GrapeClient, announce_forever

URL = "http://127.0.0.1:30001"


@dataclass
class FlakyGrape:
    """Answers announces with ``1`` unless down; records when each request came."""

    down: bool = False
    reply: str = "1"
    times: list[float] = field(default_factory=list)
    outcomes: list[bool] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/announce"
        assert json.loads(request.content)["data"] == ["svc", 5001]
        self.times.append(trio.current_time())
        self.outcomes.append(not self.down)
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200, content=self.reply.encode())

    def client(self) -> GrapeClient:
        return GrapeClient(URL, transport=httpx.MockTransport(self.handler))


def gaps(times: list[float]) -> list[float]:
    # Rounded: virtual timestamps are floats, and t + 5.0 - t need not be 5.0.
    return [round(b - a, 6) for a, b in pairwise(times)]


def grape_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "grape_client"]


async def test_outage_and_recovery_log_once_each(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="grape_client")
    grape = FlakyGrape()
    async with grape.client() as client, trio.open_nursery() as nursery:
        t0 = trio.current_time()
        await nursery.start(announce_forever, client, "svc", 5001)
        assert grape.times == [t0]  # announced at once, started() right after

        await trio.sleep(30)  # healthy: every 5 s +-20%
        healthy = len(grape.times)
        assert all(4.0 <= g <= 6.0 for g in gaps(grape.times))
        assert 5 <= healthy <= 8

        grape.down = True
        await trio.sleep(60)  # outage
        failed = len(grape.times) - healthy
        outage_gaps = gaps(grape.times[healthy:])
        assert all(g <= 5.0 for g in outage_gaps)  # backoff capped at the interval
        assert outage_gaps[0] < 1.0  # backoff starts small (0.5 s +-20%)...
        assert outage_gaps == sorted(outage_gaps)  # ...and only grows
        assert failed >= 12
        assert [level for level, _ in grape_logs(caplog)] == [logging.WARNING]

        grape.down = False
        await trio.sleep(30)  # recovered: back to the normal interval
        recovered_at = grape.outcomes.index(True, healthy)
        assert all(4.0 <= g <= 6.0 for g in gaps(grape.times[recovered_at:]))
        nursery.cancel_scope.cancel()

    assert grape_logs(caplog) == [
        (logging.WARNING,
         "announce 'svc':5001 failing, retrying with backoff: no grape answered /announce: "
         f"{URL} (ConnectError: [Errno 111] Connection refused)"),
        (logging.INFO, f"announce 'svc':5001 recovered after {failed} failed attempts"),
    ]


async def test_started_even_when_grape_is_down(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    grape = FlakyGrape(down=True)
    async with grape.client() as client, trio.open_nursery() as nursery:
        with trio.fail_after(1):  # virtual seconds: start must not wait for grape
            await nursery.start(announce_forever, client, "svc", 5001)
        assert grape.outcomes == [False]
        await trio.sleep(100)
        assert not any(grape.outcomes)
        nursery.cancel_scope.cancel()
    assert [lvl for lvl, _ in grape_logs(caplog)] == [logging.WARNING]


async def test_grape_errors_count_as_failures(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    grape = FlakyGrape(reply='"All queries failed"')
    async with grape.client() as client, trio.open_nursery() as nursery:
        await nursery.start(partial(announce_forever, client, "svc", 5001, interval=2.0))
        await trio.sleep(20)
        assert max(gaps(grape.times)) <= 2.0
        nursery.cancel_scope.cancel()
    [(level, message)] = grape_logs(caplog)
    assert level == logging.WARNING
    assert "'All queries failed'" in message


async def test_lone_grape_zero_is_success(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="grape_client")
    grape = FlakyGrape(reply='"No nodes to query"')
    async with grape.client() as client, trio.open_nursery() as nursery:
        await nursery.start(announce_forever, client, "svc", 5001)
        await trio.sleep(20)
        assert all(g >= 4.0 for g in gaps(grape.times))
        nursery.cancel_scope.cancel()
    assert grape_logs(caplog) == []


async def test_cancel_stops_it_cleanly(autojump_clock: trio.testing.MockClock) -> None:
    grape = FlakyGrape()
    async with grape.client() as client:
        with trio.move_on_after(12) as scope:
            await announce_forever(client, "svc", 5001)
        assert scope.cancelled_caught
        count = len(grape.times)
        await trio.sleep(60)
        assert len(grape.times) == count  # nothing left running


@pytest.mark.parametrize(
    ("name", "port", "interval"), [("", 5001, 5.0), ("svc", 0, 5.0), ("svc", 5001, 0.0)]
)
async def test_bad_arguments_fail_start(name: str, port: int, interval: float) -> None:
    grape = FlakyGrape()
    async with grape.client() as client, trio.open_nursery() as nursery:
        with pytest.raises(ValueError):
            await nursery.start(partial(announce_forever, client, name, port, interval=interval))
    assert grape.times == []


async def test_closed_client_ends_it_with_runtime_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    grape = FlakyGrape()
    client = grape.client()
    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="closed")):
        async with client, trio.open_nursery() as nursery:
            await nursery.start(announce_forever, client, "svc", 5001)
            await client.aclose()
            await trio.sleep(10)
