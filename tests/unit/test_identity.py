"""peer.core.identity: key file life cycle, signing, and verify() on junk."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.core.identity import Identity, verify
from peer.storage import key_file
from peer.storage.key_file import KEY_FILE_HEADER, IdentityError


def test_create_then_load_gives_the_same_id(tmp_path: Path) -> None:
    path = tmp_path / "data" / "node.key"
    first = key_file.load_or_create(path, "Client#1")
    second = key_file.load_or_create(path, "Client#1")
    assert first.node_id == second.node_id
    assert len(first.node_id) == 32
    assert first.short_id == first.node_id.hex()[:8]
    assert first.name == "Client#1"
    assert path.read_text().startswith(KEY_FILE_HEADER + "\n")
    assert [p.name for p in path.parent.iterdir()] == ["node.key"]  # no temporary left


def test_key_file_mode_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    key_file.load_or_create(path, "n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_sign_and_verify() -> None:
    ident = Identity.generate("x")
    sig = ident.sign(b"hello")
    assert len(sig) == 64
    assert verify(ident.node_id, b"hello", sig)
    assert not verify(ident.node_id, b"hellO", sig)
    assert not verify(Identity.generate("y").node_id, b"hello", sig)
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    assert not verify(ident.node_id, b"hello", bad)


def test_from_seed_is_deterministic() -> None:
    assert Identity.from_seed(b"\x01" * 32, "a").node_id == Identity.from_seed(
        b"\x01" * 32, "b").node_id
    with pytest.raises(ValueError):
        Identity.from_seed(b"short", "a")


@pytest.mark.parametrize("content", [
    b"",
    b"\x00" * 32,
    b"\xff\xfe garbage",
    KEY_FILE_HEADER.encode() + b"\n",
    KEY_FILE_HEADER.encode() + b"\nseed zz\npublic 00\n",
    KEY_FILE_HEADER.encode() + b"\nseed " + b"00" * 31 + b"\npublic " + b"00" * 32 + b"\n",
    b"x" * 10_000,
])
def test_malformed_key_file_is_reported_and_kept(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    with pytest.raises(IdentityError, match=r"node\.key") as info:
        key_file.load_or_create(path, "n")
    assert "malformed" in str(info.value)
    assert path.read_bytes() == content  # never silently replaced


def test_damaged_seed_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    key_file.load_or_create(path, "n")
    lines = path.read_text().splitlines()
    seed = lines[1].split()[1]
    flipped = ("1" if seed[0] == "0" else "0") + seed[1:]
    path.write_text("\n".join([lines[0], f"seed {flipped}", lines[2]]) + "\n")
    with pytest.raises(IdentityError, match="does not derive"):
        key_file.load_or_create(path, "n")


def test_unreadable_key_file(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.mkdir()  # a directory where the file should be
    with pytest.raises(IdentityError, match=r"node\.key"):
        key_file.load_or_create(path, "n")


def test_leftover_temporary_from_a_dead_creation_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    (tmp_path / f"node.key.creating-{os.getpid()}").write_bytes(b"half")
    ident = key_file.load_or_create(path, "n")
    assert key_file.load_or_create(path, "n").node_id == ident.node_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=80), st.binary(max_size=70))
def test_verify_never_raises_on_junk(node_id: bytes, data: bytes, sig: bytes) -> None:
    assert verify(node_id, data, sig) is False


@pytest.mark.parametrize("args", [
    ("x", b"", b""), (None, b"", b""), (b"\x00" * 32, "data", b"\x00" * 64),
    (b"\x00" * 32, b"", bytearray(64)), (b"\xff" * 32, b"m", b"\x00" * 64),
])
def test_verify_wrong_types(args: tuple[object, object, object]) -> None:
    assert verify(*args) is False  # type: ignore[arg-type]
