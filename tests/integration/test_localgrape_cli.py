"""localgrape over real loopback sockets: embedded serve(), the CLI, port clashes."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import trio

from localgrape import GrapeConfig, serve
from tests.support import free_port, free_tcp_udp_port, running_grapes


async def test_embedded_serve_binds_port_zero_and_answers() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve, GrapeConfig())
            assert bound.url == f"http://127.0.0.1:{bound.api_port}"
            assert bound.dht_port > 0 and bound.host == "127.0.0.1"
            async with httpx.AsyncClient(base_url=bound.url) as client:
                r = await client.post("/announce", json={"data": ["svc", 0]})
                assert (r.status_code, r.text) == (200, '"No nodes to query"')
                r = await client.post("/lookup", json={"data": "svc"})
                assert r.json() == [f"127.0.0.1:{bound.dht_port}"]
                assert set(r.headers) == {"date", "connection", "keep-alive",
                                          "content-length"}
            nursery.cancel_scope.cancel()


def test_cli_runs_like_a_grape_and_logs_its_addresses() -> None:
    with running_grapes([sys.executable, "-m", "localgrape"], count=1,
                        extra=["--dpa", "60000"]) as (g,):
        r = httpx.post(f"{g.url}/lookup", json={"data": "x"})
        assert (r.status_code, r.text) == (200, "[]")
        # The UDP DHT port is held: binding it again fails.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("0.0.0.0", g.dht_port))
            except OSError:
                pass
            else:
                raise AssertionError("the --dp port is not bound")
        g.proc.terminate()
        _, err = g.proc.communicate(timeout=10)
    assert f"HTTP API on 127.0.0.1:{g.api_port}" in err.decode()
    assert "accepted but not joined" not in err.decode()  # --bn '' for count=1
    assert "DHT has no bootstrap nodes" in err.decode()


def test_port_in_use_is_a_clear_error_without_traceback() -> None:
    api_port = free_port()
    dht_port = free_tcp_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", api_port))
        busy.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "localgrape", "--dp", str(dht_port), "--aph",
             str(api_port), "--bn", "127.0.0.1:1", "-b", "127.0.0.1"],
            capture_output=True, timeout=20, check=False)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "address already in use" in err and "--aph" in err
    assert "Traceback" not in err


def test_help_lists_the_grape_flags() -> None:
    out = subprocess.run([sys.executable, "-m", "localgrape", "--help"],
                         capture_output=True, timeout=20, check=True).stdout.decode()
    for flag in ("--dp", "--dht_port", "--aph", "--api_port", "--bn", "--bootstrap",
                 "-b", "--bind", "--dpa", "--dht_peer_maxAge", "--check_maxPayloadSize"):
        assert flag in out
