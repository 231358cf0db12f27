"""Names to default data dirs: one to one, safe as file names, older dirs not taken over."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.core.rules import MAX_NAME_CHARS, check_name
from peer.storage import paths
from peer.storage.names import (
    NameCollision,
    dir_name,
    legacy_dir_name,
    record_owner,
    resolve_data_dir,
)

names = st.text(min_size=1, max_size=MAX_NAME_CHARS).filter(lambda n: check_name(n) is None)


def test_the_names_that_used_to_collide_get_three_dirs() -> None:
    assert dir_name("Client#1") == "Client%231"
    assert dir_name("Client 1") == "Client%201"
    assert dir_name("Client_1") == "Client_1"
    assert legacy_dir_name("Client#1") == legacy_dir_name("Client 1") == "Client_1"


@given(names, names)
def test_distinct_names_never_share_a_dir(a: str, b: str) -> None:
    if a != b:
        assert dir_name(a) != dir_name(b)


@given(names)
def test_a_dir_name_is_one_plain_path_component(name: str) -> None:
    encoded = dir_name(name)
    assert "/" not in encoded and "\0" not in encoded
    assert not encoded.startswith(".")
    assert len(encoded.encode("utf-8")) <= 255
    assert Path(encoded).name == encoded


def test_names_too_long_to_escape_in_full_stay_distinct() -> None:
    long_a, long_b = "\U0001f600" * 63 + "a", "\U0001f600" * 63 + "b"
    assert dir_name(long_a) != dir_name(long_b)
    assert "~" in dir_name(long_a) and "~" not in dir_name("Client~1")


@given(st.text(alphabet="abcXYZ019_-.", min_size=1, max_size=MAX_NAME_CHARS).filter(
    lambda n: not n.startswith((".", "_")) and not n.endswith((".", "_"))))
def test_plain_names_keep_the_dir_older_versions_gave_them(name: str) -> None:
    assert dir_name(name) == legacy_dir_name(name)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUCTION_PEER_HOME", str(tmp_path))
    return tmp_path


def test_an_older_shared_dir_is_refused_until_someone_claims_it(home: Path) -> None:
    (home / "Client_1").mkdir()  # made by an older version, owner unknown
    with pytest.raises(NameCollision, match=r"rename it to .*Client%231"):
        resolve_data_dir("Client#1")
    assert resolve_data_dir("Client_1") == home / "Client_1"  # its plain owner's dir

    record_owner(home / "Client_1", "Client_1")  # what the plain owner's start records
    assert resolve_data_dir("Client#1") == home / "Client%231"
    assert resolve_data_dir("Client 1") == home / "Client%201"


def test_an_older_dir_claimed_by_its_name_is_kept(home: Path) -> None:
    (home / "Client_1").mkdir()
    record_owner(home / "Client_1", "Client#1")
    assert resolve_data_dir("Client#1") == home / "Client_1"


def test_a_renamed_dir_is_found_and_fresh_names_need_nothing(home: Path) -> None:
    assert resolve_data_dir("Client#2") == home / "Client%232"  # nothing there yet
    (home / "Client_3").mkdir()
    (home / "Client%233").mkdir()  # moved by its owner: the new dir wins
    assert resolve_data_dir("Client#3") == home / "Client%233"
    assert paths.owner_path(home / "x") == home / "x" / "node.name"
