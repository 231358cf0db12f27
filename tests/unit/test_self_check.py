"""The self-check: which listed address answers as this node, and advice when none does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from grape_client import GrapeUnavailable
from peer.net.self_check import FAILED, MAX_CANDIDATES, PASSED, check_self, is_local_address

ME, OTHER = b"\x01" * 32, b"\x02" * 32


def _lookup(addresses: list[str]) -> Callable[[], Awaitable[list[str]]]:
    async def lookup() -> list[str]:
        return addresses
    return lookup


def _answers(table: dict[str, bytes | Exception]
             ) -> tuple[Callable[[str], Awaitable[bytes]], list[str]]:
    asked: list[str] = []

    async def who_is_at(address: str) -> bytes:
        asked.append(address)
        answer = table[address]
        if isinstance(answer, Exception):
            raise answer
        return answer
    return who_is_at, asked


async def test_passes_on_the_listed_address_that_answers_as_this_node() -> None:
    who, asked = _answers({"10.9.0.1:5000": OTHER, "127.0.0.1:5000": ME})
    result = await check_self(_lookup(["10.9.0.1:5000", "127.0.0.1:5000", "127.0.0.1:6000"]),
                              who, ME, 5000, "0.0.0.0")
    assert result.state == PASSED and result.passed
    assert result.address == "127.0.0.1:5000" and result.detail == ""
    assert sorted(asked) == ["10.9.0.1:5000", "127.0.0.1:5000"]  # never another port


async def test_listening_on_one_address_while_grape_lists_another() -> None:
    who, _ = _answers({"127.0.0.1:5000": ConnectionRefusedError(111, "Connection refused")})
    result = await check_self(_lookup(["127.0.0.1:5000"]), who, ME, 5000, "127.0.0.2")
    assert result.state == FAILED and result.address == "127.0.0.1:5000"
    assert "listens on 127.0.0.2:5000 only" in result.detail
    assert "--host 0.0.0.0" in result.detail and "--host 127.0.0.1" in result.detail


async def test_an_address_that_is_not_this_hosts_points_at_the_grape() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never an address of this machine; nothing is sent.
    who, _ = _answers({"192.0.2.7:5000": TimeoutError()})
    result = await check_self(_lookup(["192.0.2.7:5000"]), who, ME, 5000, "0.0.0.0")
    assert result.state == FAILED
    assert "not an address of this host" in result.detail
    assert "use a grape on this host" in result.detail
    assert "TimeoutError" in result.detail


async def test_listening_everywhere_but_not_answering_suggests_a_firewall() -> None:
    who, _ = _answers({"127.0.0.1:5000": ConnectionResetError()})
    result = await check_self(_lookup(["127.0.0.1:5000"]), who, ME, 5000, "0.0.0.0")
    assert result.state == FAILED and "firewall" in result.detail


async def test_another_node_on_the_port_is_named() -> None:
    who, _ = _answers({"127.0.0.1:5000": OTHER})
    result = await check_self(_lookup(["127.0.0.1:5000"]), who, ME, 5000, "0.0.0.0")
    assert result.state == FAILED
    assert f"answers as another node ({OTHER.hex()[:8]})" in result.detail


async def test_not_listed_and_grape_down_fail_with_the_grape_named() -> None:
    who, asked = _answers({})
    result = await check_self(_lookup(["127.0.0.1:6000"]), who, ME, 5000, "0.0.0.0")
    assert result.state == FAILED and result.address == ""
    assert "no address with port 5000" in result.detail and "--grape" in result.detail
    assert asked == []

    async def down() -> list[str]:
        raise GrapeUnavailable("no grape answered")
    result = await check_self(down, who, ME, 5000, "0.0.0.0", service="svc")
    assert result.state == FAILED and "looking up 'svc' in Grape failed" in result.detail


@pytest.mark.parametrize(("host", "local"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("192.0.2.7", False), ("not-an-ip", False),
    ("", False), ("10.0.0.1\x00", False),
])
def test_is_local_address(host: str, local: bool) -> None:
    assert is_local_address(host) is local


async def test_at_most_max_candidates_are_asked() -> None:
    listed = [f"10.9.{i // 250}.{i % 250}:5000" for i in range(5000)]
    who, asked = _answers(dict.fromkeys(listed, TimeoutError()))
    result = await check_self(_lookup(listed), who, ME, 5000, "0.0.0.0")
    assert result.state == FAILED and len(asked) == MAX_CANDIDATES
