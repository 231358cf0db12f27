"""Nodes that die, come back, join late, and peers that stay listed in Grape after death."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.harness import NodeProc, nodes

WINNER = "Client#2 -> 80 USDt"


def _show(node: NodeProc, ref: str) -> dict[str, object]:
    r = node.cli("show", ref, "--json", "--oldest-first")
    assert r.code == 0, r
    data: dict[str, object] = json.loads(r.stdout)
    return data


def _bids(node: NodeProc, ref: str) -> list[tuple[str, str]]:
    shown = _show(node, ref)
    bids = shown["bids"]
    assert isinstance(bids, list)
    return [(b["bidder"], b["amount"]) for b in bids]


def test_killed_bidder_catches_up_and_late_node_gets_full_state(
        tmp_path: Path, grape_urls: list[str]) -> None:
    with nodes(tmp_path, grape_urls[:1], ["Client#1", "Client#2", "Client#3"]) as (c1, c2, c3):
        for n in (c1, c2, c3):
            n.wait_peers(2)
        assert c1.cli("open", "Pic#1", "75").code == 0
        assert c2.cli("bid", "Client#1->Pic#1", "75").code == 0
        c3.wait_text("Client#2 bid 75 USDt")

        c3.kill()  # SIGKILL mid-scenario: no goodbye, still listed in Grape
        assert c2.cli("bid", "Client#1->Pic#1", "80").code == 0
        assert c1.cli("close", "Client#1->Pic#1").code == 0
        c2.wait_text(WINNER)

        # Live nodes keep working with no error output about the dead one.
        for n in (c1, c2):
            errors = [line for line in n.stderr_lines if " ERROR " in line or "Traceback" in line]
            assert not errors, errors

        c3.start()  # same data dir: catches up from whoever is up
        assert _bids(c3, "Client#1->Pic#1") == [("Client#2", "75"), ("Client#2", "80")]
        assert _show(c3, "Client#1->Pic#1")["state"] == "closed"

        # The newcomer uses the other grape: it finds everyone through the DHT.
        late = NodeProc("Client#4", tmp_path / "Client4", grape_urls[-1:]).start()
        try:
            assert late.ready["synced"] >= 4, "".join(late.stderr_lines)
            assert _bids(late, "Client#1->Pic#1") == [("Client#2", "75"), ("Client#2", "80")]
            assert _show(late, "Client#1->Pic#1")["state"] == "closed"
        finally:
            late.stop()


def test_seller_offline_state_stays_visible_and_bids_are_unreachable(
        tmp_path: Path, grape_urls: list[str]) -> None:
    with nodes(tmp_path, grape_urls[:1], ["Client#1", "Client#2", "Client#3"]) as (c1, c2, c3):
        for n in (c1, c2, c3):
            n.wait_peers(2)
        assert c1.cli("open", "Pic#1", "75").code == 0
        assert c2.cli("bid", "Client#1->Pic#1", "76").code == 0
        c3.wait_text("Client#2 bid 76 USDt")
        c1.kill()

        r = c3.cli("bid", "Client#1->Pic#1", "90")
        assert r.code == 1
        assert "SELLER_UNREACHABLE" in r.stderr
        assert _bids(c3, "Client#1->Pic#1") == [("Client#2", "76")]

        # A brand-new node learns the seller's auction from the others (relayed logs).
        # The newcomer uses the other grape: it finds everyone through the DHT.
        late = NodeProc("Client#4", tmp_path / "Client4", grape_urls[-1:]).start()
        try:
            assert _bids(late, "Client#1->Pic#1") == [("Client#2", "76")]
        finally:
            late.stop()
