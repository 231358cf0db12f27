"""Differential test: the same requests to a lone real grape and a lone localgrape.

Both are started with the same flags (``--bn '' -b 127.0.0.1``, a lone grape,
grape-http-api.md section 7) and every deterministic row of sections 1-5 that does
not depend on the size of the network is sent to both, in the same order. Status,
body and headers (without ``Date``) must be equal. Names carry a per-run nonce;
``id`` in get answers and each node's own DHT port are masked (section 9). The
crash inputs of section 7 are never sent to the real grape.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.support import GrapeProc, require_grape, running_grapes

pytestmark = pytest.mark.interop

NONCE = uuid.uuid4().hex[:12]
SVC = f"svc-{NONCE}"


def _rows() -> list[tuple[str, bytes]]:
    def j(path: str, data: object) -> tuple[str, bytes]:
        return path, json.dumps({"rid": "r", "data": data}).encode()

    def raw(path: str, body: bytes) -> tuple[str, bytes]:
        return path, body

    hello = "e28910ea0adb94dd45ced75fbff3e135c01bc437"
    rows = [
        # Section 1: bodies, paths, JSON dialect.
        raw("/lookup", b""), raw("/lookup", b"{data:"), raw("/lookup", b"null"),
        raw("/lookup", b"5"), raw("/lookup", b'"x"'), raw("/lookup", b"[1]"),
        raw("/lookup", b"{}"), raw("/lookup", b'{"data": NaN}'),
        raw("/lookup", b'{"data": "x"} x'), raw("/lookup", b' {"data":"a","data":" "} '),
        raw("/foo", b"{"),
        *[j(p, SVC) for p in ("/Lookup", "/-lookup", "/_lookup", "/--lookup", "/LOOKUP",
                              "/lookUp", "/look-up", "/lookup/", "/lookup?x=1", "//lookup",
                              "/", "/foo")],
        # Section 2: lookup.
        *[j("/lookup", d) for d in ("", 123, ["a"], None, True, {"a": 1}, " ", SVC)],
        # Section 3: announce.
        j("/announce", [SVC, 5001]), j("/lookup", SVC), j("/announce", [SVC, 5001]),
        j("/lookup", SVC), j("/announce", [SVC + "-0", 0]), j("/lookup", SVC + "-0"),
        j("/announce", [SVC + "-f", 1234.0]), j("/announce", [SVC + "-f", 1e3]),
        j("/announce", [SVC + "-f", 65535]), j("/announce", [SVC + "-f", 5010, "x", 5]),
        j("/announce", [[115, 118, 99, 45, *NONCE.encode()], 5030]),
        j("/lookup", "svc-" + NONCE),
        j("/announce", [f"h\u00e9-{NONCE}-\u2713", 7]), j("/lookup", f"h\u00e9-{NONCE}-\u2713"),
        raw("/announce", b'{"data":["conf:\xff' + NONCE.encode() + b'",7]}'),
        j("/lookup", f"conf:\ufffd{NONCE}"),
        *[j("/announce", [SVC, p]) for p in ("1234", 12.5, None, True, [1234])],
        raw("/announce", b'{"data":["x",1e400]}'), j("/announce", [SVC]), j("/announce", []),
        *[j("/announce", d) for d in ("s", {"a": 1}, None)], raw("/announce", b"{}"),
        *[j("/announce", [n, 1234]) for n in (123, None, {}, True)],
        # Out-of-range ports only after the name was looked up (no crash, section 3).
        j("/lookup", SVC + "-r"), j("/announce", [SVC + "-r", -1]),
        j("/announce", [SVC + "-r", 70000]),
        # Section 5: put and get.
        j("/put", {"v": "hello"}), j("/put", "hello"), j("/get", hello),
        j("/get", hello.upper()), j("/get", {"hash": hello}),
        j("/put", {"v": ""}), j("/put", {"v": "h\u00e9llo \u2713"}), j("/put", {"v": 5}),
        j("/get", "fd512d5838b7f0c9fa46debf0d0f0d0d28ea81a1"),
        j("/put", {"v": "a" * 1000}), j("/put", {"v": "\U0001f600" * 500}),
        j("/put", {"v": "\u00e9" * 500}), j("/get", "9315a2cd94b8231d6c3ad4f1f51ab8658ffd0f08"),
        j("/put", {"v": "\u00e9" * 501}), j("/put", {}), j("/put", 5), j("/put", True),
        j("/put", [1, 2]), j("/put", {"v": None}), raw("/put", b"{}"), j("/put", None),
        j("/put", {"v": "x", "k": ""}), j("/put", {"v": "x", "k": 0}),
        j("/put", {"v": "x", "k": "ab" * 32, "sig": "cd" * 64, "seq": 1}),
        j("/put", {"v": "x", "k": "ab" * 32, "sig": "cd" * 64, "seq": 1, "salt": "s"}),
        j("/put", {"v": "x", "k": "abcd"}), j("/put", {"v": "x", "k": "zz"}),
        j("/put", {"v": "x", "k": [1, 2]}), j("/put", {"v": "x", "k": "ab" * 32}),
        j("/put", {"v": "x", "k": "ab" * 32, "sig": "00"}),
        j("/put", {"v": "x", "k": "ab" * 32, "sig": "00", "seq": "1"}),
        j("/put", {"v": "x", "k": "ab" * 32, "sig": "00", "seq": 1.5}),
        j("/put", {"v": "x", "k": "ab" * 32, "sig": "00", "seq": 1, "salt": "s" * 65}),
        j("/put", {"v": "x", "k": "ab" * 32, "sig": "00", "seq": 1, "cas": "1"}),
        j("/put", {"k": "ab" * 32}),
        j("/get", "00" * 20), j("/get", 5), j("/get", [1, 2]), j("/get", {"x": 1}),
        j("/get", None), raw("/get", b"{}"),
        j("/put", {"v": [1, "a", None, [2]]}), j("/put", {"v": {"b": 1, "a": True}}),
        j("/put", {"v": 1.5}), j("/put", {"v": -5.5}),
    ]
    return rows


def _exchange(port: int, path: str, body: bytes) -> tuple[bytes, list[bytes], bytes]:
    """One request on a fresh connection: (status line, headers without Date, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                  b"\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(h.split(b":")[1]) for h in lines if h.startswith(b"Content-Length"))
        while len(rest) < length:
            rest += s.recv(65536)
    headers = [h for h in lines[1:] if not h.startswith(b"Date: ")]
    return lines[0], headers, rest


def _normalise(body: bytes, grape: GrapeProc) -> bytes:
    body = body.replace(str(grape.dht_port).encode(), b"<DP>")
    body = re.sub(rb'"id":"[0-9a-f]{40}"', b'"id":"<ID>"', body)
    if body.startswith(b"["):  # several peers come in random order (section 2)
        body = json.dumps(sorted(json.loads(body)), separators=(",", ":")).encode()
    return body


@pytest.fixture
def lone_pair() -> Iterator[tuple[GrapeProc, GrapeProc]]:
    real_bin = require_grape()
    with running_grapes([real_bin], count=1) as (real,), \
            running_grapes([sys.executable, "-m", "localgrape"], count=1) as (local,):
        yield real, local


def test_every_deterministic_row_matches_a_lone_real_grape(
        lone_pair: tuple[GrapeProc, GrapeProc]) -> None:
    real, local = lone_pair
    mismatches = []
    for path, body in _rows():
        want = _exchange(real.api_port, path, body)
        got = _exchange(local.api_port, path, body)
        want = (want[0], want[1], _normalise(want[2], real))
        got = (got[0], got[1], _normalise(got[2], local))
        if want != got:
            mismatches.append(f"{path} {body[:80]!r}: grape {want} localgrape {got}")
    assert real.proc.poll() is None, "the real grape died"
    assert not mismatches, "\n".join(mismatches)


def test_framing_quirks_match(lone_pair: tuple[GrapeProc, GrapeProc]) -> None:
    real, local = lone_pair
    requests = [
        b"POST /lookup HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 12\r\n\r\n"
        b'{"data":"x"}',
        b'POST /lookup HTTP/1.0\r\nContent-Length: 12\r\n\r\n{"data":"x"}',
        b"garbage\r\n\r\n",
        b"\r\n\r\nPOST /lookup HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n"
        b'{"data":"x"}',
        b"POST /lookup HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'c\r\n{"data":"x"}\r\n0\r\n\r\n',
        b"POST /lookup HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
    ]

    def send(port: int, request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return re.sub(rb"Date: [^\r]*\r\n", b"", out)

    for request in requests:
        assert send(local.api_port, request) == send(real.api_port, request), request[:60]
