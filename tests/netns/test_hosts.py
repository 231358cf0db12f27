"""Four hosts in network namespaces: what a deployment across machines does by default.

Hosts 1-3 run a real grape each, host 4 runs localgrape; all four grapes bootstrap to
each other over their DHT port, as the README's "Across machines" says. Each host
runs one node with no network flags at all (default --host, --port and --grape),
and every command goes through the CLI on the node's own host.

No delay or loss is injected: `tc netem` is not available on these kernels. A host
that vanishes is a bridge port taken down (its packets are dropped, nothing is
refused), which is the case a liveness probe exists for.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from peer.net.mesh import HELLO_TIMEOUT, LIVENESS_IDLE, LIVENESS_TICK
from tests.e2e.harness import NodeProc
from tests.netns.lab import Lab, running_lab
from tests.support import ROOT, require_grape

DHT_PORT, API_PORT = 20001, 30001
# A vanished host is shown down within the liveness bound (README, Limits); the rest
# is room for a loaded machine.
DOWN_WITHIN = LIVENESS_IDLE + LIVENESS_TICK + HELLO_TIMEOUT + 1 + 10


def _grape(lab: Lab, host: int, argv0: list[str]) -> subprocess.Popen[bytes]:
    others = ",".join(f"{lab.address(h)}:{DHT_PORT}"
                      for h in range(1, lab.hosts + 1) if h != host)
    return subprocess.Popen([*lab.exec(host), *argv0, "--dp", str(DHT_PORT),
                             "--aph", str(API_PORT), "--bn", others],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)


def _wait_listening(lab: Lab, host: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until the grape on ``host`` answers TCP on its HTTP port (asked on that host)."""
    probe = [*lab.exec(host), sys.executable, "-c",
             f"import socket; socket.create_connection(('127.0.0.1', {API_PORT}), 1)"]
    deadline = time.monotonic() + 20
    while subprocess.run(probe, capture_output=True, timeout=10).returncode != 0:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"grape on host {host} exited ({proc.returncode}): {err}")
        if time.monotonic() > deadline:
            pytest.fail(f"grape on host {host} never listened on {API_PORT}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()


def _peers_up(node: NodeProc) -> set[str]:
    """Names of the peers whose last peer_up/peer_down line says up."""
    state: dict[str, bool] = {}
    for line in list(node.lines):
        if line.get("event") in ("peer_up", "peer_down"):
            state[line["peer"]] = line["event"] == "peer_up"
    return {name for name, up in state.items() if up}


def _wait_peers_up(node: NodeProc, names: set[str], timeout: float = 20) -> None:
    node.wait_for(lambda _: names <= _peers_up(node), timeout=timeout,
                  what=f"peers {sorted(names)} up")


def _ok(node: NodeProc, *args: str) -> dict[str, Any]:
    result = node.cli(*args, "--json")
    assert result.code == 0, f"{node.name} {args}: {result}"
    reply: dict[str, Any] = result.json()
    return reply


def _no_errors(node: NodeProc) -> None:
    bad = [line for line in node.stderr_lines if " ERROR " in line or "Traceback" in line]
    assert not bad, f"{node.name} logged errors: {bad}"


def _stop_nodes(nodes: list[NodeProc]) -> None:
    """Stop every node that runs, all at once (each says goodbye before it exits)."""
    running = [n for n in nodes if n.proc is not None and n.proc.poll() is None]
    for node in running:
        assert node.proc is not None
        node.proc.terminate()
    with ThreadPoolExecutor(max(1, len(running))) as pool:
        list(pool.map(NodeProc.stop, running))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, list[NodeProc]]]:
    """The lab, a grape on every host, and Client#1..#4 started with default flags.

    One lab for the module: building it and starting eight processes is most of
    the cost. The tests below run in file order and leave host 3 cut off.
    """
    grape = require_grape()
    data = tmp_path_factory.mktemp("hosts")
    with ExitStack() as stack:
        lab = stack.enter_context(running_lab(4))  # torn down last, after every process
        grapes = [_grape(lab, h, [grape]) for h in (1, 2, 3)]
        grapes.append(_grape(lab, 4, [sys.executable, "-m", "localgrape"]))
        for proc in grapes:
            stack.callback(_stop, proc)
        for host, proc in enumerate(grapes, start=1):
            _wait_listening(lab, host, proc)
        nodes = [NodeProc(f"Client#{h}", data / f"h{h}", [], prefix=lab.exec(h), flags=[])
                 for h in (1, 2, 3, 4)]
        stack.callback(_stop_nodes, nodes)
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(NodeProc.start, nodes))
        yield lab, nodes


def test_reference_scenario_vanished_host_and_restart_across_hosts(
        hosts: tuple[Lab, list[NodeProc]], tmp_path: Path) -> None:
    lab, nodes = hosts
    one, two, three, four = nodes
    names = {n.name for n in nodes}

    # Default flags: each node found the address the others dial, on its own host.
    for host, node in enumerate(nodes, start=1):
        ready = node.ready
        assert ready["self_check"] == "passed", ready
        assert ready["dial_address"] == f"{lab.address(host)}:{ready['port']}"
    for node in nodes:
        _wait_peers_up(node, names - {node.name})

    # The reference scenario, every command on the node's own host.
    _ok(one, "open", "Pic#1", "75", "--currency", "USDt")
    for node in nodes:
        node.wait_event("opened", "Client#1->Pic#1")
    _ok(two, "bid", "Client#1->Pic#1", "75")
    _ok(three, "bid", "Client#1->Pic#1", "75.5")
    _ok(two, "bid", "Client#1->Pic#1", "80")
    low = three.cli("bid", "Client#1->Pic#1", "79")
    assert low.code == 1 and "BID_TOO_LOW" in low.stderr
    _ok(one, "close", "Client#1->Pic#1")
    for node in nodes:
        closed = node.wait_event("closed", "Client#1->Pic#1")
        assert (closed["winner"], closed["amount"], closed["currency"]) == (
            "Client#2", "80", "USDt")

    # Host 3 vanishes while bids flow: everyone else shows it down within the
    # liveness bound, and no bid fails.
    _ok(one, "open", "Pic#2", "60")
    for node in (two, four):
        node.wait_event("opened", "Client#1->Pic#2")
    lab.link(3, up=False)
    cut = time.monotonic()
    amount = 60
    survivors = (one, two, four)
    while not all("Client#3" not in _peers_up(n) for n in survivors):
        assert time.monotonic() - cut < DOWN_WITHIN, (
            f"Client#3 still up after {DOWN_WITHIN:.0f}s: "
            f"{[(n.name, sorted(_peers_up(n))) for n in survivors]}")
        bidder = two if amount % 2 == 0 else four
        _ok(bidder, "bid", "Client#1->Pic#2", str(amount))
        amount += 1
    assert amount > 60  # bids went through while it was vanishing
    for node in survivors:
        _no_errors(node)

    # A restart: same port, and what happened meanwhile is synced.
    port = two.ready["port"]
    assert two.stop() == 0
    _ok(four, "bid", "Client#1->Pic#2", str(amount + 10))
    _ok(one, "close", "Client#1->Pic#2")
    two.start()
    assert two.ready["port"] == port
    assert two.ready["self_check"] == "passed", two.ready
    assert two.ready["synced"] >= 2, two.ready  # at least the bid and the close it missed
    shown = _ok(two, "show", "Client#1->Pic#2")
    assert shown["state"] == "closed"
    assert (shown["winner"]["bidder"], shown["winner"]["amount"]) == ("Client#4",
                                                                      str(amount + 10))
    _no_errors(two)


def test_node_unreachable_at_its_announced_address_says_so(
        hosts: tuple[Lab, list[NodeProc]], tmp_path: Path) -> None:
    """--host 127.0.0.1 (the old default): Grape lists 10.201.0.4, and the node warns."""
    lab, _ = hosts
    lonely = NodeProc("Client#5", tmp_path / "h4b", [], prefix=lab.exec(4),
                      flags=["--host", "127.0.0.1"])
    try:
        ready = lonely.start().ready
        assert ready["self_check"] == "failed"
        assert ready["dial_address"] == f"{lab.address(4)}:{ready['port']}"
        assert "--host 0.0.0.0" in ready["self_check_detail"]
        warnings = [line for line in lonely.stderr_lines
                    if "WARNING" in line and "self-check FAILED" in line]
        assert warnings and "--host 0.0.0.0" in warnings[0]
        status = _ok(lonely, "status")
        assert status["self_check"] == "failed"
    finally:
        lonely.stop()
