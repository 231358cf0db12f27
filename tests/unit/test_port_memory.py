"""The port a node picked is remembered in its data dir; a bad file never stops a node."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.storage import port_memory


def test_remembered_port_comes_back(tmp_path: Path) -> None:
    assert port_memory.recall(tmp_path) is None
    port_memory.remember(tmp_path, 40123)
    assert port_memory.recall(tmp_path) == 40123
    port_memory.remember(tmp_path, 5)
    assert port_memory.recall(tmp_path) == 5
    assert [p.name for p in tmp_path.iterdir()] == [port_memory.PORT_FILE]  # no temporary left
    assert (tmp_path / port_memory.PORT_FILE).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_remember_refuses_a_non_port(tmp_path: Path, port: int) -> None:
    with pytest.raises(ValueError):
        port_memory.remember(tmp_path, port)
    assert port_memory.recall(tmp_path) is None


@pytest.mark.parametrize("content", [b"", b"0\n", b"65536", b"-5", b"http", b"\xff\xfe",
                                     b"1" * 100, b"80 81"])
def test_unusable_file_is_reported_and_ignored(tmp_path: Path, content: bytes,
                                               caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / port_memory.PORT_FILE).write_bytes(content)
    assert port_memory.recall(tmp_path) is None
    assert "picking a new one" in caplog.text


def test_unreadable_file_is_reported_and_ignored(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / port_memory.PORT_FILE).mkdir()  # reading a directory fails
    assert port_memory.recall(tmp_path) is None
    assert "cannot read" in caplog.text


@given(st.binary(max_size=200))
def test_any_content_gives_a_valid_port_or_none(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / port_memory.PORT_FILE).write_bytes(content)
        port = port_memory.recall(Path(tmp))
        assert port is None or 1 <= port <= 65535
