"""write_durably: whole files or none, 0600, keeping or replacing what is there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.storage.durable_file import write_durably


def test_a_new_file_is_private_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "f"
    write_durably(path, b"abc")
    assert path.read_bytes() == b"abc"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["f"]


def test_replace_or_keep_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "f"
    write_durably(path, b"first")
    write_durably(path, b"second")
    assert path.read_bytes() == b"second"
    # The node key's rule: a file made meanwhile by another process is the one kept.
    write_durably(path, b"third", keep_existing=True)
    assert path.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    write_durably(path, b"old")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        write_durably(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


@given(st.binary(max_size=4096))
def test_any_bytes_come_back(data: bytes) -> None:
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f"
        write_durably(path, data)
        assert path.read_bytes() == data
