"""A message declared huge is refused from its 5-byte prefix, and the node's memory
stays where it was (a real `serve` process, a raw HTTP/2 client)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from peer.net.h2_guard import TransportLimits
from tests.e2e.harness import nodes
from tests.h2_attacker import MiB, declare_huge, rss_bytes
from tests.support import node_tls, running_grapes

LIMITS = TransportLimits()


@pytest.fixture
def one_grape() -> Iterator[str]:
    with running_grapes([sys.executable, "-m", "localgrape"], count=1) as grapes:
        yield grapes[0].url


def test_a_declared_huge_message_is_refused_before_its_body(
        tmp_path: Path, one_grape: str) -> None:
    with nodes(tmp_path, [one_grape], ["Client#1"]) as (node,):
        assert node.proc is not None
        port = int(node.ready["port"])
        assert node.cli("open", "Pic#1", "75").code == 0
        # Warm the same code paths once, so what is measured is what the attack adds.
        declare_huge(port, declared=LIMITS.max_message_bytes + 1, tls=node_tls())
        before = rss_bytes(node.proc.pid)

        for path in ("/auction.v1.Peer/Push", "/auction.v1.Peer/PushStream",
                     "/auction.v1.Peer/PlaceBid", "/auction.v1.Peer/Sync"):
            result = declare_huge(port, path=path, tls=node_tls())
            assert result.grpc_status == "8", result  # RESOURCE_EXHAUSTED
            assert result.reset
            # No window was handed back for the body: the sender got at most the
            # initial windows' worth out, nowhere near the 256 MiB it tried.
            assert result.sent <= LIMITS.stream_window + 64 * 1024, result.sent

        after = rss_bytes(node.proc.pid)
        assert after - before < 8 * MiB, (before, after)
        # Still serving, with its data.
        listed = node.cli("list", "--json")
        assert listed.code == 0 and "Pic#1" in listed.stdout
        assert not any("Traceback" in line for line in node.stderr_lines)
