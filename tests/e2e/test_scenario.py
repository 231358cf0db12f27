"""The reference scenario (DESIGN.md section 1) across three `serve` processes, CLI only."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import nodes

WINNER = "Client#2 -> 80 USDt"


def test_reference_scenario(tmp_path: Path, grape_urls: list[str]) -> None:
    # Each node uses "its own" grape, as the README recommends.
    homes = [grape_urls[i % len(grape_urls)] for i in range(3)]
    with nodes(tmp_path, homes[:1], ["Client#1"]) as (c1,), \
            nodes(tmp_path, homes[1:2], ["Client#2"]) as (c2,), \
            nodes(tmp_path, homes[2:3], ["Client#3"]) as (c3,):
        everyone = (c1, c2, c3)
        for n in everyone:
            n.wait_peers(2)

        r = c1.cli("open", "Pic#1", "75", "--currency", "USDt")
        assert r.code == 0, r
        r = c2.cli("open", "Pic#2", "60")
        assert r.code == 0, r
        for n in everyone:
            n.wait_event("opened", "Client#1->Pic#1")
            n.wait_event("opened", "Client#2->Pic#2")

        for node, amount in ((c2, "75"), (c3, "75.5"), (c2, "80")):
            r = node.cli("bid", "Client#1->Pic#1", amount)
            assert r.code == 0, r
            for n in everyone:
                n.wait_text(f"{node.name} bid {amount} USDt on Client#1->Pic#1")

        low = c3.cli("bid", "Client#1->Pic#1", "79")
        assert low.code == 1
        assert "BID_TOO_LOW" in low.stderr and "80" in low.stderr

        own = c1.cli("bid", "Client#1->Pic#1", "100")
        assert own.code == 1 and "SELF_BID" in own.stderr

        not_seller = c2.cli("close", "Client#1->Pic#1")
        assert not_seller.code == 1 and "NOT_SELLER" in not_seller.stderr

        r = c1.cli("close", "Client#1->Pic#1")
        assert r.code == 0, r
        for n in everyone:
            closed = n.wait_text(WINNER)
            assert closed["event"] == "closed"
            assert closed["winner"] == "Client#2"
            assert closed["amount"] == "80"
            assert closed["currency"] == "USDt"

        late = c3.cli("bid", "Client#1->Pic#1", "90")
        assert late.code == 1 and "AUCTION_CLOSED" in late.stderr

        # Every node shows the same closed auction: each bid, in order, and the winner.
        for n in everyone:
            shown = n.cli("show", "Client#1->Pic#1", "--json", "--oldest-first")
            assert shown.code == 0, shown
            auction = shown.json()
            assert (auction["label"], auction["state"], auction["start_amount"],
                    auction["currency"]) == ("Client#1->Pic#1", "closed", "75", "USDt")
            assert [(b["bidder"], b["amount"]) for b in auction["bids"]] == [
                ("Client#2", "75"), ("Client#3", "75.5"), ("Client#2", "80")]
            assert (auction["winner"]["bidder"], auction["winner"]["amount"]) == (
                "Client#2", "80")
        text = c3.cli("show", "Client#1->Pic#1")
        assert text.code == 0, text
        assert "  state:       closed" in text.stdout.splitlines()
        assert "  winner:      Client#2 -> 80 USDt" in text.stdout.splitlines()
        bad = c2.cli("bid", "Client#1->Pic#1", "abc")
        assert bad.code == 2
