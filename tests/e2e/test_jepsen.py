"""Jepsen-style: bids flow while sellers and bidders are SIGKILLed, calls are cancelled
by short deadlines and the seller's disk fills up; then every acknowledged bid must be
on every node, all nodes must agree, and no log on disk may have a hole.

Real node processes on loopback. The seller's data dir is a small tmpfs that the test
fills (commits then fail in SQLite, as on a full disk), so it needs root (CI runs as
root) and skips with the reason otherwise. Bounded: about a minute.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from grpclib.client import Channel

from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.rules import Rejection
from peer.core.signed_events import decode_signed, make_signed_bid
from peer.gen.auction.v1 import PeerStub, SignedEvent
from peer.net.codec import LimitedCodec
from tests.e2e.harness import NodeProc
from tests.e2e.test_storage_full import _fill, _small_tmpfs
from tests.support import close_now, node_ssl, running_grapes

pytestmark = pytest.mark.slow

CHAOS_SECONDS = 25.0
CONVERGE_SECONDS = 40.0
# PlaceBid deadlines of the direct bidders: most calls are cancelled at the seller
# while their Accept is being applied or committed, some get through.
DEADLINES = (0.001, 0.002, 0.005, 0.02, 2.0)
LABEL = "Client#1->Lot"


@dataclass
class Acked:
    """Bids acknowledged to someone: (bidder name, amount), and the seller's Accept
    events handed to direct bidders as (seq, event bytes)."""

    bids: set[tuple[str, str]] = field(default_factory=set)
    accepts: dict[int, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: int = 0


class DirectBidder(threading.Thread):
    """Calls the seller's PlaceBid itself, with short deadlines, in bursts."""

    def __init__(self, identity: Identity, seller: NodeProc, key: AuctionKey,
                 amounts: itertools.count[int], acked: Acked, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.identity, self.seller, self.key = identity, seller, key
        self.amounts, self.acked, self.stop = amounts, acked, stop
        self.nonces = itertools.count(1)
        self.rng = random.Random(identity.name)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        while not self.stop.is_set():
            port = self.seller.ready.get("port")
            channel = Channel("127.0.0.1", int(port), codec=LimitedCodec(),
                              ssl=node_ssl()) if port else None
            try:
                for _ in range(20):
                    if self.stop.is_set() or channel is None:
                        break
                    await self._one(PeerStub(channel))
            finally:
                if channel is not None:
                    close_now(channel)
            await asyncio.sleep(0.01)

    async def _one(self, stub: PeerStub) -> None:
        with self.acked.lock:
            amount = str(next(self.amounts))
            self.acked.attempts += 1
        bid = make_signed_bid(self.identity, self.key, amount, "USDt", next(self.nonces),
                              int(time.time() * 1000))
        try:
            reply = await stub.place_bid(bid, timeout=self.rng.choice(DEADLINES))
        except Exception:  # deadline, refused connection, killed seller: not acknowledged
            return
        if reply.accepted is not None:
            seq = _seq_of(reply.accepted.event)
            with self.acked.lock:
                self.acked.bids.add((self.identity.name, amount))
                self.acked.accepts[seq] = reply.accepted.event


def _seq_of(event: bytes) -> int:
    decoded = decode_signed(SignedEvent(event=event, signature=b"\0" * 64))
    assert not isinstance(decoded, Rejection), decoded
    return decoded.fields.seq


def _cli_bids(bidders: list[NodeProc], amounts: itertools.count[int], acked: Acked,
              stop: threading.Event) -> None:
    """Bids through the bidders' nodes, as users place them (exit 0 = acknowledged)."""
    while not stop.is_set():
        for node in bidders:
            with acked.lock:
                amount = str(next(amounts))
            if node.proc is None or node.proc.poll() is not None:
                continue
            result = node.cli("bid", LABEL, amount)
            if result.code == 0:
                with acked.lock:
                    acked.bids.add((node.name, amount))


def _first_few(bids: set[tuple[str, str]]) -> str:
    ordered = sorted(bids, key=lambda b: int(b[1]))
    return f"{len(ordered)}: {ordered[:5]}{' ...' if len(ordered) > 5 else ''}"


def _outages(node: NodeProc) -> int:
    """Storage outages the node has logged since it last started."""
    return sum(" ERROR " in line and "cannot write the event log" in line
               for line in list(node.stderr_lines))


def _events_on_disk(db: Path) -> dict[tuple[bytes, int], bytes]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT author, seq, data FROM events").fetchall()
    return {(author, seq): data for author, seq, data in rows}


def _shown_bids(node: NodeProc) -> list[tuple[str, str]] | None:
    shown = node.cli("show", LABEL, "--json", "--oldest-first", "--limit", "1000")
    if shown.code != 0:
        return None
    return [(b["bidder"], b["amount"]) for b in shown.json()["bids"]]


def test_acknowledged_bids_survive_kills_cancelled_calls_and_a_full_disk(
        tmp_path: Path) -> None:
    rng = random.Random(1)
    with _small_tmpfs(tmp_path / "disk") as disk, \
            running_grapes([sys.executable, "-m", "localgrape"], count=1) as grapes:
        urls = [grapes[0].url]
        seller = NodeProc("Client#1", disk / "Client1", urls).start()
        bidders = [NodeProc(f"Client#{n}", tmp_path / f"Client{n}", urls).start()
                   for n in (2, 3)]
        everyone = [seller, *bidders]
        stop = threading.Event()
        acked = Acked()
        amounts = itertools.count(1)
        threads: list[threading.Thread] = []
        kills = fills = 0
        try:
            for node in everyone:
                node.wait_peers(2)
            opened = seller.cli("open", "Lot", "1", "--json")
            assert opened.code == 0, opened
            author, _, seq = opened.json()["id"].rpartition(":")
            key = AuctionKey(bytes.fromhex(author), int(seq))
            for node in bidders:
                node.wait_text("opened Lot")

            threads = [DirectBidder(Identity.from_seed(bytes([0x80 + i]) * 32, f"Direct#{i}"),
                                    seller, key, amounts, acked, stop) for i in range(2)]
            threads.append(threading.Thread(target=_cli_bids,
                                            args=(bidders, amounts, acked, stop), daemon=True))
            for thread in threads:
                thread.start()

            chaos_ends = time.monotonic() + CHAOS_SECONDS
            faults = itertools.cycle(["fill_disk", "kill_seller", "kill_bidder"])
            while time.monotonic() < chaos_ends:
                time.sleep(rng.uniform(1.0, 2.0))  # bids flow between faults
                fault = next(faults)
                if fault == "fill_disk":
                    before = _outages(seller)
                    filler = _fill(disk)
                    time.sleep(rng.uniform(0.5, 1.5))  # commits fail meanwhile
                    filler.unlink()
                    fills += _outages(seller) - before
                else:
                    victim = seller if fault == "kill_seller" else rng.choice(bidders)
                    victim.kill()
                    kills += 1
                    victim.start()
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)

        try:
            # Every acknowledged bid reaches every node, and all nodes agree.
            deadline = time.monotonic() + CONVERGE_SECONDS
            while True:
                views = [_shown_bids(node) for node in everyone]
                first = views[0]
                if (first is not None and all(v == first for v in views)
                        and acked.bids <= set(first)):
                    break
                if time.monotonic() > deadline:
                    missing = {n.name: _first_few(acked.bids - set(v or [])) for n, v in
                               zip(everyone, views, strict=True)}
                    pytest.fail(f"not converged after {CONVERGE_SECONDS}s; acknowledged"
                                f" bids missing: {missing}")
                time.sleep(0.5)
        finally:
            for node in everyone:
                node.stop()

        assert acked.bids and acked.accepts, "no bid was acknowledged: the test tested nothing"
        assert kills and fills, f"faults that took effect: {kills} kills, {fills} outages"
        databases = [seller.data_dir / "events.sqlite3",
                     *(b.data_dir / "events.sqlite3" for b in bidders)]
        logs = [_events_on_disk(db) for db in databases]
        for db, events in zip(databases, logs, strict=True):
            per_author: dict[bytes, list[int]] = {}
            for a, s in events:
                per_author.setdefault(a, []).append(s)
            for a, seqs in per_author.items():
                assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"hole in {db}: {a.hex()}"
        assert logs[1] == logs[0] and logs[2] == logs[0], "the nodes' logs differ"
        for seq, event in acked.accepts.items():
            assert logs[0].get((key.author, seq)) == event, f"acknowledged seq {seq} lost"
        print(f"{acked.attempts} bids tried, {len(acked.bids)} acknowledged, {kills} kills,"
              f" {fills} storage outages")
