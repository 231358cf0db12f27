"""`open`'s time terms in the CLI, and how `list`/`show`/notifications render timed auctions."""

from __future__ import annotations

from pathlib import Path

import pytest

from peer.cli.commands import EXIT_USAGE, _open_request, build_parser, main
from peer.cli.render import auction_json, auction_lines, list_lines, notification_json, time_left
from peer.core.rules import format_time
from peer.gen.auction.v1 import (
    AuctionState,
    AuctionView,
    BidView,
    CloseReason,
    Notification,
    NotificationKind,
)

NOW = 1_800_000_000_000


def test_open_builds_the_terms() -> None:
    args = build_parser().parse_args(["open", "Pic#3", "50", "--ends-in", "30s", "--extend",
                                      "10s", "--min-increment", "1", "--reserve", "60",
                                      "--name", "Client#1"])
    request = _open_request(args)
    assert (request.ends_in_ms, request.ends_at_ms, request.extend_ms) == (30_000, 0, 10_000)
    assert (request.min_increment, request.reserve) == ("1", "60")
    args = build_parser().parse_args(["open", "Pic#3", "50", "--ends-at", "2026-12-24T18:00Z",
                                      "--name", "Client#1"])
    request = _open_request(args)
    assert request.ends_at_ms == 1_798_135_200_000 and request.ends_in_ms == 0
    plain = _open_request(build_parser().parse_args(["open", "Pic#1", "75", "--name", "C"]))
    assert (plain.ends_at_ms, plain.ends_in_ms, plain.extend_ms) == (0, 0, 0)
    assert (plain.min_increment, plain.reserve) == ("", "")


@pytest.mark.parametrize(("extra", "message"), [
    (["--ends-in", "soon"], "bad --ends-in"),
    (["--ends-in", "0s"], "bad --ends-in"),
    (["--ends-at", "next tuesday"], "bad --ends-at"),
    (["--extend", "10s"], "--extend needs an end"),
    (["--ends-in", "1m", "--extend", "x"], "bad --extend"),
    (["--min-increment", "abc"], "bad --min-increment"),
    (["--reserve", "-5"], "bad --reserve"),
])
def test_bad_terms_are_usage_errors_before_any_node_is_asked(
        tmp_path: Path, extra: list[str], message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["open", "Pic#3", "50", *extra, "--data-dir", str(tmp_path)])
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_ends_in_and_ends_at_exclude_each_other(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["open", "P", "1", "--ends-in", "1m", "--ends-at", "2026-12-24T18:00Z",
                 "--data-dir", str(tmp_path)])
    assert code == EXIT_USAGE
    assert "not allowed with" in capsys.readouterr().err


def _bid(name: str, amount: str) -> BidView:
    return BidView(bidder=b"\x02" * 32, bidder_name=name, amount=amount, currency="USDt",
                   time_ms=NOW)


def _view(**fields: object) -> AuctionView:
    base: dict[str, object] = dict(id="ab" * 32 + ":1", seller=b"\x01" * 32,
                                   seller_name="Client#1", item="Pic#3", start_amount="50",
                                   currency="USDt", state=AuctionState.OPEN, opened_ms=NOW)
    base.update(fields)
    return AuctionView(**base)  # type: ignore[arg-type]


def test_time_left() -> None:
    timed = _view(ends_at_ms=NOW + 90_500)
    assert time_left(timed, NOW) == "1m30s left"
    assert time_left(timed, NOW + 90_000) == "1s left"  # never "0s left" while open
    assert time_left(timed, NOW + 90_500) == "ended"
    assert time_left(_view(), NOW) == ""
    assert time_left(_view(state=AuctionState.CLOSED, ends_at_ms=NOW), NOW) == "closed"


def test_show_and_list_of_an_auction_that_ended_awaiting_close() -> None:
    view = _view(state=AuctionState.ENDED, ends_at_ms=NOW + 5_000,
                 announced_ends_at_ms=NOW + 3_000, extend_ms=2_000, min_increment="1",
                 reserve="60", reserve_met=True, bids=[_bid("Client#2", "61")])
    lines = auction_lines(view, NOW + 6_000)
    assert "  state:       ended, awaiting Client#1's close" in lines
    assert (f"  ends:        {format_time(NOW + 5_000)} (ended), moved from"
            f" {format_time(NOW + 3_000)}") in lines
    assert "  extension:   a bid in the last 2s moves the end" in lines
    assert "  increment:   1 USDt" in lines
    assert "  reserve:     60 USDt (met)" in lines
    assert "  will win:    Client#2 -> 61 USDt" in lines
    (line,) = list_lines([view], now_ms=NOW + 6_000)
    assert "ended" in line and "(ended)" in line
    running = _view(ends_at_ms=NOW + 12_000, bids=[_bid("Client#2", "55")])
    (line,) = list_lines([running], now_ms=NOW)
    assert "best Client#2 -> 55 USDt  (12s left)" in line


def test_closed_views_and_notifications_say_how_it_closed_and_the_reserve_outcome() -> None:
    no_sale = _view(state=AuctionState.CLOSED, ends_at_ms=NOW, announced_ends_at_ms=NOW,
                    reserve="60", reserve_met=False, close_reason=CloseReason.ENDED,
                    closed_ms=NOW + 10, bids=[_bid("Client#2", "55")])
    lines = auction_lines(no_sale, NOW + 100)
    assert "  state:       closed (ended)" in lines
    assert "  reserve:     60 USDt (not met)" in lines
    assert "  winner:      none, no sale (reserve not met)" in lines
    shown = auction_json(no_sale)
    assert shown["winner"] is None and shown["closed_by"] == "ended"
    assert shown["result"] == "no sale (reserve not met)" and shown["reserve"] == "60"
    assert "no sale (reserve not met), best 55 USDt" in list_lines([no_sale], now_ms=NOW)[0]
    note = notification_json(Notification(kind=NotificationKind.CLOSED, auction=no_sale,
                                          text="x"))
    assert (note["winner"], note["closed_by"], note["result"]) == (
        None, "ended", "no sale (reserve not met)")
    by_seller = _view(state=AuctionState.CLOSED, ends_at_ms=NOW, reserve_met=True,
                      close_reason=CloseReason.BY_SELLER, bids=[_bid("Client#2", "55")])
    note = notification_json(Notification(kind=NotificationKind.CLOSED, auction=by_seller,
                                          bid=_bid("Client#2", "55"), text="x"))
    assert (note["winner"], note["closed_by"], note["result"]) == ("Client#2", "seller",
                                                                   "sold")
    assert "  state:       closed by its seller" in auction_lines(by_seller, NOW)
    untimed = auction_json(_view())
    assert untimed["ends_at_ms"] is None and untimed["reserve"] is None


def test_a_sealed_reserve_is_shown_as_sealed_until_it_is_revealed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["open", "Pic#5", "10", "--ends-in", "1m",
                                      "--sealed-reserve", "60", "--name", "C"])
    request = _open_request(args)
    assert (request.sealed_reserve, request.reserve) == ("60", "")
    code = main(["open", "P", "1", "--reserve", "5", "--sealed-reserve", "6", "--data-dir",
                 str(tmp_path)])
    assert code == EXIT_USAGE
    assert "not allowed with" in capsys.readouterr().err
    ended = _view(state=AuctionState.ENDED, ends_at_ms=NOW, reserve_sealed=True,
                  bids=[_bid("Client#2", "61")])
    lines = auction_lines(ended, NOW + 1)
    assert "  reserve:     sealed (revealed when it closes)" in lines
    assert "  will win:    Client#2 -> 61 USDt, if the sealed reserve is met" in lines
    shown = auction_json(ended)
    assert shown["reserve_sealed"] is True and shown["reserve_met"] is None
    assert shown["reserve"] is None
    revealed = _view(state=AuctionState.CLOSED, ends_at_ms=NOW, reserve_sealed=True,
                     reserve="60", reserve_met=True, close_reason=CloseReason.ENDED,
                     bids=[_bid("Client#2", "61")])
    assert "  reserve:     60 USDt, sealed until the close (met)" in auction_lines(revealed)
    assert auction_json(revealed)["reserve_met"] is True
