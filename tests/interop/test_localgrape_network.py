"""Differential test of two-node networks: two real grapes versus two localgrapes.

Both networks are started the same way (``tests.support.running_grapes``: two
grapes bootstrapped to each other, ``-b 127.0.0.1``), which is the test setup of
grape-http-api.md. Every deterministic row of sections 1-5 goes to node A, then
rows that cross the network: announce on one node and look up on the other, put
on one and get on the other (from the other's own store and, with ``cache:
false``, from the network). Status, headers (without ``Date``) and body must be
equal, announce counts included. Each node's DHT port and the random ``id`` and
``token`` are masked (section 9). The crash inputs of section 7 are never sent.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterator

import pytest

from tests.interop.test_localgrape_differential import NONCE, SVC, _exchange, _rows
from tests.support import GrapeProc, require_grape, running_grapes

pytestmark = pytest.mark.interop

A, B = 0, 1
HELLO = "e28910ea0adb94dd45ced75fbff3e135c01bc437"


def _sha1(bencoded: bytes) -> str:
    return hashlib.sha1(bencoded).hexdigest()


def _network_rows() -> list[tuple[int, str, bytes]]:
    def j(node: int, path: str, data: object) -> tuple[int, str, bytes]:
        return node, path, json.dumps({"rid": "r", "data": data}).encode()

    from_b = f"from-b-{NONCE}"
    e501 = _sha1(b"1002:" + "\u00e9".encode() * 501)
    rows = [(A, path, body) for path, body in _rows()]
    rows += [
        # Section 3: visibility is immediate on the other node; counts are 1.
        j(B, "/lookup", SVC), j(B, "/lookup", SVC + "-0"), j(B, "/lookup", "svc-" + NONCE),
        j(B, "/lookup", f"h\u00e9-{NONCE}-\u2713"), j(B, "/lookup", f"conf:\ufffd{NONCE}"),
        j(B, "/announce", [SVC, 5002]), j(A, "/lookup", SVC), j(B, "/lookup", SVC),
        j(B, "/announce", [SVC + "-b0", 0]), j(A, "/lookup", SVC + "-b0"),
        j(B, "/lookup", f"never-{NONCE}"),
        # Section 5: B stored A's puts (token null), or asks A (cache: false).
        j(B, "/get", HELLO), j(B, "/get", {"hash": HELLO, "cache": False}),
        j(B, "/get", "9315a2cd94b8231d6c3ad4f1f51ab8658ffd0f08"),
        j(B, "/get", e501),  # B refused it (over 1000 bytes): A answers, with a token
        j(B, "/get", "fd512d5838b7f0c9fa46debf0d0f0d0d28ea81a1"),  # 5 -> "5"
        j(B, "/get", _sha1(b"li1e1:ali2eee")), j(A, "/get", _sha1(b"li1e1:ali2eee")),
        j(B, "/get", _sha1(b"d1:ai1e1:bi1ee")), j(A, "/get", _sha1(b"d1:ai1e1:bi1ee")),
        j(B, "/get", _sha1(b"i1e")), j(A, "/get", _sha1(b"i1e")),
        j(B, "/put", {"v": from_b}),
        j(A, "/get", _sha1(f"{len(from_b)}:{from_b}".encode())),
        j(A, "/get", {"hash": _sha1(f"{len(from_b)}:{from_b}".encode()), "cache": False}),
        j(B, "/get", {"hash": "00" * 20, "cache": False}),
        j(B, "/get", {"hash": hashlib.sha1(bytes.fromhex("ab" * 32) + b"s").hexdigest(),
                      "salt": "s"}),
        # Falsy values: refused by the other node ("All queries failed"), kept here.
        j(A, "/put", {"v": False}), j(A, "/get", _sha1(b"i0e")), j(B, "/get", _sha1(b"i0e")),
        j(A, "/put", {"v": 0}),
    ]
    return rows


def _normalise(body: bytes, grapes: list[GrapeProc]) -> bytes:
    for i, grape in enumerate(grapes):
        body = body.replace(str(grape.dht_port).encode(), b"<DP%d>" % i)
    body = re.sub(rb'"id":"[0-9a-f]{40}"', b'"id":"<ID>"', body)
    body = re.sub(rb'"token":"[0-9a-f]{40}"', b'"token":"<TOKEN>"', body)
    if body.startswith(b"["):  # several peers come in random order (section 2)
        body = json.dumps(sorted(json.loads(body)), separators=(",", ":")).encode()
    return body


@pytest.fixture
def networks() -> Iterator[tuple[list[GrapeProc], list[GrapeProc]]]:
    real_bin = require_grape()
    with running_grapes([real_bin], count=2) as real, \
            running_grapes([sys.executable, "-m", "localgrape"], count=2) as local:
        yield real, local


def test_two_localgrapes_answer_every_row_like_two_real_grapes(
        networks: tuple[list[GrapeProc], list[GrapeProc]]) -> None:
    real, local = networks
    mismatches = []
    for node, path, body in _network_rows():
        want = _exchange(real[node].api_port, path, body)
        got = _exchange(local[node].api_port, path, body)
        want = (want[0], want[1], _normalise(want[2], real))
        got = (got[0], got[1], _normalise(got[2], local))
        if want != got:
            mismatches.append(f"{'AB'[node]} {path} {body[:80]!r}: grape {want} "
                              f"localgrape {got}")
    assert all(g.proc.poll() is None for g in real), "a real grape died"
    assert not mismatches, "\n".join(mismatches)
