"""A grape that restarts empty is re-announced to, so nodes that start later still find everyone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.harness import NodeProc, nodes
from tests.support import free_port, free_tcp_udp_port, wait_until


def _answers(url: str) -> bool:
    try:
        httpx.post(url + "/lookup", json={"rid": "probe", "data": "probe"}, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def _start_localgrape(dht_port: int, api_port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "localgrape", "--dp", str(dht_port),
                             "--aph", str(api_port), "-b", "127.0.0.1", "--bn", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{api_port}"
    wait_until(lambda: _answers(url) or proc.poll() is not None, timeout=20, what="localgrape")
    assert proc.poll() is None, "localgrape exited at start"
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=10)


def _lookup(url: str) -> list[str]:
    try:
        reply = httpx.post(url + "/lookup", json={"rid": "t", "data": "auction"}, timeout=5)
    except httpx.HTTPError:
        return []
    found: list[str] = reply.json()
    return found


def test_nodes_reannounce_to_a_restarted_grape(tmp_path: Path) -> None:
    dht_port, api_port = free_tcp_udp_port(), free_port()
    url = f"http://127.0.0.1:{api_port}"
    grape = _start_localgrape(dht_port, api_port)
    try:
        with nodes(tmp_path, [url], ["Client#1", "Client#2"]) as (c1, c2):
            c1.wait_peers(1)
            _stop(grape)
            # With the grape gone, known peers still trade.
            assert c1.cli("open", "Pic#1", "75").code == 0
            c2.wait_event("opened", "Client#1->Pic#1")

            grape = _start_localgrape(dht_port, api_port)  # back, and empty
            wait_until(lambda: len(_lookup(url)) == 2, timeout=20,
                       what="both nodes re-announced to the restarted grape")
            late = NodeProc("Client#3", tmp_path / "Client3", [url]).start()
            try:
                late.wait_peers(2)
                # The late node learnt the auction from a peer it found through the
                # restarted grape.
                shown = late.cli("show", "Client#1->Pic#1", "--json")
                assert shown.code == 0, shown
                auction = shown.json()
                assert (auction["label"], auction["state"], auction["start_amount"]) == (
                    "Client#1->Pic#1", "open", "75")
                assert auction["seller_id"] == c1.ready["node_id"]
            finally:
                late.stop()
            for n in (c1, c2):
                assert not [line for line in n.stderr_lines if "Traceback" in line]
    finally:
        _stop(grape)


def test_dead_first_grape_url_fails_over_to_the_next(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    dht_port, api_port = free_tcp_udp_port(), free_port()
    live = f"http://127.0.0.1:{api_port}"
    grape = _start_localgrape(dht_port, api_port)
    try:
        with nodes(tmp_path, [dead, live], ["Client#1", "Client#2"]) as (c1, c2):
            c1.wait_peers(1)
            c2.wait_peers(1)
            assert sorted(_lookup(live)) == sorted(
                f"127.0.0.1:{n.ready['port']}" for n in (c1, c2))
    finally:
        _stop(grape)
