"""The CLI without a node: usage errors and an unreachable node have their exit codes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peer.cli import EXIT_UNREACHABLE, EXIT_USAGE, build_parser, main


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
    from peer.paths import control_socket_path

    control_socket_path(tmp_path).write_bytes(b"")  # a file, not a listening socket
    assert main(["status", "--data-dir", str(tmp_path)]) == EXIT_UNREACHABLE
    assert "no node is answering" in capsys.readouterr().err


def test_target_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == EXIT_USAGE
    assert "--name NAME or --data-dir DIR" in capsys.readouterr().err


def test_unknown_command_is_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == EXIT_USAGE


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
