"""The real-grape fixture itself works: two grapes that see each other's announces."""

from __future__ import annotations

import socket
import sys

import httpx
import pytest

from devsupport.ports import free_port
from tests import support
from tests.support import GrapeProc


def test_two_real_grapes_share_announces(real_grapes: list[GrapeProc]) -> None:
    a, b = real_grapes
    r = httpx.post(a.url + "/announce", json={"rid": "1", "data": ["fixture-check", 5001]})
    assert r.status_code == 200
    assert r.text == "1"
    r = httpx.post(b.url + "/lookup", json={"rid": "2", "data": "fixture-check"})
    assert r.json() == ["127.0.0.1:5001"]


def test_a_port_taken_before_the_grape_binds_it_is_retried_on_fresh_ports(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Another process takes the "free" API port between the pick and the bind.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        picks = iter([taken_port])
        monkeypatch.setattr(support, "free_port", lambda: next(picks, None) or free_port())
        with support.running_grapes([sys.executable, "-m", "localgrape"], count=1) as (grape,):
            assert grape.api_port != taken_port
            r = httpx.post(grape.url + "/lookup", json={"rid": "1", "data": "nothing"})
            assert r.status_code == 200


def test_a_grape_that_fails_for_another_reason_fails_the_test() -> None:
    with pytest.raises(pytest.fail.Exception, match="exited early"), \
            support.running_grapes([sys.executable, "-m", "localgrape", "--no-such-flag"],
                                   count=1):
        pass
