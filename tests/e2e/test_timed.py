"""Timed auctions across three `serve` processes, CLI only, with second-scale durations:
the auction ends by itself on every node with the same winner, a bid in the last window
visibly moves the end, and a seller offline at the end closes first thing on its return,
revealing its sealed reserve from its own log and key."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import NodeProc, nodes
from tests.support import running_grapes, wait_until


@pytest.fixture
def localgrapes() -> Iterator[list[str]]:
    with running_grapes([sys.executable, "-m", "localgrape"], count=2) as grapes:
        yield [g.url for g in grapes]


def _sleep_until_ms(wall_ms: int) -> None:
    # Not a synchronization: the scenario needs a bid placed at a chosen moment.
    time.sleep(max(0.0, wall_ms / 1000 - time.time()))


def _shown(node: NodeProc, auction: str) -> dict[str, object]:
    shown = node.cli("show", auction, "--json")
    assert shown.code == 0, shown
    result: dict[str, object] = shown.json()
    return result


def test_a_timed_auction_ends_by_itself_with_one_winner_everywhere(
        tmp_path: Path, localgrapes: list[str]) -> None:
    with nodes(tmp_path, localgrapes[:1], ["Client#1"]) as (c1,), \
            nodes(tmp_path, localgrapes[1:], ["Client#2", "Client#3"]) as (c2, c3):
        everyone = (c1, c2, c3)
        for n in everyone:
            n.wait_peers(2)
        label = "Client#1->Pic#3"
        # Long enough for the CLI calls before the last bid on a loaded machine.
        opened = c1.cli("open", "Pic#3", "50", "--ends-in", "8s", "--extend", "4s",
                        "--min-increment", "1", "--json")
        assert opened.code == 0, opened
        announced_end = opened.json()["ends_at_ms"]
        assert opened.json()["extend_ms"] == 4000 and opened.json()["min_increment"] == "1"
        for n in everyone:
            n.wait_event("opened", label)

        r = c2.cli("bid", label, "50")
        assert r.code == 0, r
        low = c3.cli("bid", label, "50.5")
        assert low.code == 1, low
        assert "BID_TOO_LOW" in low.stderr and "minimum increment is 1 USDt" in low.stderr

        _sleep_until_ms(announced_end - 3000)  # inside the last 4 s
        r = c3.cli("bid", label, "51")
        assert r.code == 0, r
        listed = c3.cli("list")
        assert listed.code == 0 and label in listed.stdout and "left)" in listed.stdout, listed
        for n in everyone:
            moved = n.wait_text("Client#3 bid 51 USDt on Client#1->Pic#3; end extended by")
            assert moved["ends_at_ms"] > announced_end

        closed = {n.name: n.wait_event("closed", label, timeout=20) for n in everyone}
        for record in closed.values():
            assert record["text"] == "Client#1->Pic#3 ended: Client#3 -> 51 USDt"
            assert (record["winner"], record["amount"]) == ("Client#3", "51")
            assert record["closed_by"] == "ended" and record["result"] == "sold"
        shown = _shown(c2, label)
        assert shown["state"] == "closed" and shown["closed_by"] == "ended"
        assert isinstance(shown["ends_at_ms"], int) and shown["ends_at_ms"] > announced_end
        late = c2.cli("bid", label, "60")
        assert late.code == 1 and "AUCTION_CLOSED" in late.stderr, late


def test_an_offline_seller_closes_first_thing_when_it_returns(
        tmp_path: Path, localgrapes: list[str]) -> None:
    with nodes(tmp_path, localgrapes[:1], ["Client#1"]) as (c1,), \
            nodes(tmp_path, localgrapes[1:], ["Client#2"]) as (c2,):
        for n in (c1, c2):
            n.wait_peers(1)
        label = "Client#1->Pic#4"
        opened = c1.cli("open", "Pic#4", "50", "--ends-in", "6s", "--sealed-reserve", "100",
                        "--json")
        assert opened.code == 0, opened
        end = opened.json()["ends_at_ms"]
        c2.wait_event("opened", label)
        r = c2.cli("bid", label, "60")  # below the reserve: accepted, it may still lose
        assert r.code == 0, r
        assert c1.stop() == 0  # offline at the end

        ended = c2.wait_event("ended", label, timeout=15)
        assert ended["result"] == "sold if the sealed reserve is met"
        assert ended["winner"] is None
        shown = _shown(c2, label)
        assert shown["state"] == "ended" and shown["reserve_met"] is None
        assert shown["reserve"] is None and shown["reserve_sealed"] is True
        text = c2.cli("show", label)
        assert "awaiting Client#1's close" in text.stdout, text
        assert "reserve:     sealed (revealed when it closes)" in text.stdout, text

        c1.start()
        # Closed before the node served anything: already closed when it says ready,
        # the reserve revealed from the seller's own log and key.
        back = _shown(c1, label)
        assert back["state"] == "closed" and back["closed_by"] == "ended"
        assert back["winner"] is None and back["result"] == "no sale (reserve not met)"
        assert back["reserve"] == "100"
        closed = c2.wait_event("closed", label, timeout=20)
        assert closed["text"] == ("Client#1->Pic#4 ended: no sale (sealed reserve 100 USDt"
                                  " not met; best 60 USDt by Client#2)")
        assert closed["closed_by"] == "ended" and closed["winner"] is None
        wait_until(lambda: _shown(c2, label)["state"] == "closed", what="c2 sees the close")
        assert time.time() * 1000 >= end
