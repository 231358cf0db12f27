"""The real-grape fixture itself works: two grapes that see each other's announces."""

from __future__ import annotations

import httpx

from tests.support import GrapeProc


def test_two_real_grapes_share_announces(real_grapes: list[GrapeProc]) -> None:
    a, b = real_grapes
    r = httpx.post(a.url + "/announce", json={"rid": "1", "data": ["fixture-check", 5001]})
    assert r.status_code == 200
    assert r.text == "1"
    r = httpx.post(b.url + "/lookup", json={"rid": "2", "data": "fixture-check"})
    assert r.json() == ["127.0.0.1:5001"]
