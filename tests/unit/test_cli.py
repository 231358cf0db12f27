"""The CLI without a node: usage errors and an unreachable node have their exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from peer.cli.commands import EXIT_UNREACHABLE, EXIT_USAGE, build_parser, main
from peer.net.views import MAX_BID_PAGE


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "open", "bid", "close", "list", "show", "watch", "status", "demo"):
        assert command in out


@pytest.mark.parametrize("price", ["abc", "-1", "0", "1e3", "NaN", "1.1234567", ""])
def test_bad_price_is_usage_error_before_any_node_is_asked(
        tmp_path: Path, price: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bid", "Client#1->Pic#1", price, "--data-dir", str(tmp_path)])
    assert code == EXIT_USAGE
    assert "bad price" in capsys.readouterr().err


def test_no_node_running_is_exit_3_with_advice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["list", "--data-dir", str(tmp_path)])
    assert code == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "no node is answering" in err and "Traceback" not in err


def test_stale_socket_file_is_unreachable_not_a_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from peer.storage.paths import control_socket_path

    control_socket_path(tmp_path).write_bytes(b"")  # a file, not a listening socket
    assert main(["status", "--data-dir", str(tmp_path)]) == EXIT_UNREACHABLE
    assert "no node is answering" in capsys.readouterr().err


def test_target_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == EXIT_USAGE
    assert "--name NAME or --data-dir DIR" in capsys.readouterr().err


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "invalid choice: 'frobnicate'" in captured.err and "usage:" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("argv", [
    ["frobnicate", "--json"],
    ["bid", "x", "abc", "--data-dir", "/nonexistent", "--json"],
    ["show", "", "--data-dir", "/nonexistent", "--json"],
    ["serve", "--name", "A", "--grape", "notaurl", "--json"],
    ["serve", "--json"],
])
def test_json_usage_errors_print_one_object(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    record = json.loads(out[0])
    assert record["error"] == "BAD_USAGE" and record["reason"]
    assert ("event" in record) == (argv[0] == "serve")


def test_json_unreachable_prints_one_object(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--data-dir", str(tmp_path), "--json"]) == EXIT_UNREACHABLE
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["error"] == "NODE_UNREACHABLE"


@pytest.mark.parametrize("command", ["bid", "close", "show"])
@pytest.mark.parametrize("auction", ["", "   ", "Client#1-", "x -"])
def test_auctions_that_cannot_be_ids_are_usage_errors_before_any_node_is_asked(
        tmp_path: Path, command: str, auction: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [command, auction, *(["1"] if command == "bid" else []), "--data-dir", str(tmp_path)]
    assert main(argv) == EXIT_USAGE  # not 3: the missing node is never asked
    err = capsys.readouterr().err
    if auction.strip():
        assert "redirect" in err and "'Client#1->Pic#1'" in err
    else:
        assert "AUCTION is empty" in err


@pytest.mark.parametrize(("flag", "value", "reason"), [
    ("--limit", "0", f"argument --limit: must be 1..{MAX_BID_PAGE}, not 0"),
    ("--limit", str(MAX_BID_PAGE + 1),
     f"argument --limit: must be 1..{MAX_BID_PAGE}, not {MAX_BID_PAGE + 1}"),
    ("--limit", "ten", "argument --limit: not a number: 'ten'"),
    ("--offset", "-1", "argument --offset: must be 0 or more, not -1"),
    ("--offset", "1.5", "argument --offset: not a number: '1.5'"),
])
def test_show_page_bounds_are_usage_errors_before_any_node_is_asked(
        tmp_path: Path, flag: str, value: str, reason: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["show", "Client#1->Pic#1", flag, value, "--data-dir", str(tmp_path)]
    assert main(argv) == EXIT_USAGE
    assert reason in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value", "field"), [
    ("--limit", "1", "limit"), ("--limit", str(MAX_BID_PAGE), "limit"),
    ("--offset", "0", "offset"), ("--offset", "123456", "offset"),
])
def test_show_page_bounds_take_their_ends(flag: str, value: str, field: str) -> None:
    args = build_parser().parse_args(["show", "Client#1->Pic#1", flag, value, "--name", "A"])
    assert getattr(args, field) == int(value)


def test_version_names_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"auction-peer {metadata.version('auction-peer')}"


def test_a_data_dir_that_is_a_file_is_unreachable_not_a_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    assert main(["status", "--data-dir", str(tmp_path / "file")]) == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "no node is answering" in err and "Traceback" not in err


def test_a_data_dir_it_cannot_look_into_is_a_clear_refusal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may look into any directory")
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o000)
    try:
        assert main(["status", "--data-dir", str(closed / "d")]) == EXIT_UNREACHABLE
        err = capsys.readouterr().err
        assert "cannot look at the control socket" in err and "Traceback" not in err
    finally:
        closed.chmod(0o700)
