"""An impostor in Grape claims a seller's id and refuses every bid: bids still reach
the real seller, and nothing stays stuck once the impostor is gone."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

import localgrape
from devsupport.ports import free_port
from devsupport.serving import QuietPeer, serving
from grape_client import GrapeClient
from peer.cli.output import Output
from peer.config import NodeConfig
from peer.core.rules import Rejection as RuleRejection
from peer.gen.auction.v1 import (
    BidRequest,
    HelloReply,
    HelloRequest,
    OpenRequest,
    PeerStub,
    PlaceBidReply,
    RejectCode,
    Rejection,
    SignedBid,
)
from peer.net import aio
from peer.net.mesh import DOWN, DUPLICATE, UP, Mesh
from peer.net.rpc import PeerService
from peer.net.tls import server_context
from peer.node import Node
from peer.storage import tls_cert
from tests.support import node_ssl, node_tls, wait_mesh


class Impostor(QuietPeer):
    """Claims ``victim``'s id and name in Hello and refuses every bid.

    The strongest version a Grape announcer can run without the key: it relays each
    Hello to the real seller, rewriting the dialed address to the seller's own (the
    seller refuses to sign any other), and passes the seller's proof back as its own.
    """

    def __init__(self, victim_id: bytes, victim_name: str, victim_address: str) -> None:
        self.victim_id = victim_id
        self.victim_name = victim_name
        self.victim_address = victim_address
        self.relay: Callable[[HelloRequest], Awaitable[HelloReply]] | None = None
        self.hellos = 0
        self.relayed = 0
        self.bids = 0

    async def on_hello(self, request: HelloRequest, reached_at: object,
                       binding: bytes = b"") -> HelloReply:
        self.hellos += 1
        reply = HelloReply(node_id=self.victim_id, name=self.victim_name,
                           challenge=os.urandom(32), proof=os.urandom(64))
        if self.relay is not None and request.challenge:
            relayed = HelloRequest(node_id=request.node_id, name=request.name,
                                   challenge=request.challenge, address=self.victim_address)
            try:
                reply = await self.relay(relayed)
                self.relayed += 1
            except Exception:
                pass  # the seller is down: answer with a made-up proof
        return reply

    async def on_place_bid(self, bid: SignedBid) -> PlaceBidReply:
        self.bids += 1
        return PlaceBidReply(rejected=Rejection(code=RejectCode.BID_TOO_LOW, reason="censored"),
                             rejection_signature=os.urandom(64))


async def run_impostor(impostor: Impostor, grape_url: str, *,
                       task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``impostor`` on a free port, announce it in Grape; runs until cancelled."""
    host, _, port = impostor.victim_address.rpartition(":")
    # As the nodes do (TLS by default), with a certificate of its own: it has no other.
    with tempfile.TemporaryDirectory(prefix="impostor-") as cert_dir:
        certificate = tls_cert.load_or_create(Path(cert_dir))
        context = server_context(certificate) if node_tls() else None  # loaded: in memory
    async with aio.open_loop() as loop:
        bridge = aio.Bridge(loop)
        stubs: list[PeerStub] = []

        async def relay(request: HelloRequest) -> HelloReply:
            async def call() -> HelloReply:
                if not stubs:
                    from grpclib.client import Channel
                    stubs.append(PeerStub(Channel(host, int(port), ssl=node_ssl())))
                return await stubs[0].hello(request, timeout=2.0)
            return await bridge.to_trio(call)

        impostor.relay = relay
        async with serving([PeerService(impostor, binding=certificate.binding)],
                           ssl=context, host="127.0.0.1", port=0) as server:
            try:
                async with GrapeClient(grape_url) as grape:
                    await grape.announce("auction", server.port)
                task_status.started(f"127.0.0.1:{server.port}")
                await trio.sleep_forever()
            finally:
                for stub in stubs:
                    stub.channel.close()


def _config(tmp_path: Path, name: str, grape_url: str) -> NodeConfig:
    # No anti-entropy during the test: its Sync calls would notice a dead seller
    # before the scenarios below want it noticed.
    return NodeConfig(name=name, data_dir=tmp_path / name, grape_urls=(grape_url,),
                      lookup_interval=0.2, announce_interval=0.5, anti_entropy_interval=60.0)


class Running:
    """A node running in a scope of its own, so a test can stop it alone."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()

    async def stop(self) -> None:
        self.scope.cancel()
        await self.stopped.wait()


async def _run_stoppable(nursery: trio.Nursery, node: Node) -> Running:
    running = Running()

    async def runner(task_status: trio.TaskStatus[None]) -> None:
        try:
            with running.scope:
                async with trio.open_nursery() as inner:
                    await inner.start(node.run)
                    task_status.started()
        finally:
            running.stopped.set()

    await nursery.start(runner)
    return running


async def _start_knowing(nursery: trio.Nursery, node: Node, auction: str) -> Running:
    """Start ``node`` and wait until it holds ``auction`` (synced from whoever is up)."""
    with node.control_subscribe() as notes:
        running = await _run_stoppable(nursery, node)
        with trio.fail_after(10):
            while not _knows(node, auction):
                await notes.receive()
    return running


def _knows(node: Node, auction: str) -> bool:
    return not isinstance(node.ledger.resolve(auction), RuleRejection)


def _node(tmp_path: Path, name: str, grape_url: str, port: int = 0) -> Node:
    config = dataclasses.replace(_config(tmp_path, name, grape_url), port=port)
    return Node(config, Output(json_lines=True, stream=io.StringIO()))


def _seller_up(mesh: Mesh, seller_id: bytes, address: str) -> bool:
    link = mesh.links.get(address)
    return link is not None and link.state == UP and link.node_id == seller_id


async def _bid(bidder: Node, auction: str, amount: str) -> tuple[str, str]:
    reply = await bidder.control_bid(BidRequest(auction=auction, amount=amount))
    if reply.rejected is not None:
        return "refused", f"{reply.rejected.code.name}: {reply.rejected.reason}"
    # The bidder's own view may still wait for an earlier Accept by another bidder
    # (held behind the gap); the tests check the seller's ledger for the bids.
    assert reply.auction is not None
    return "accepted", amount


async def test_every_fresh_bidder_reaches_the_real_seller(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="peer.net.mesh")
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        seller = _node(tmp_path, "Client#1", grape.url)
        info = await nursery.start(seller.run)
        seller_address = f"127.0.0.1:{info.port}"
        impostor = Impostor(info.node_id, "Client#1", seller_address)
        impostor_address = await nursery.start(run_impostor, impostor, grape.url)
        opened = await seller.control_open(OpenRequest(item="Pic#1", start_amount="10",
                                                       currency="USDt"))
        assert opened.auction is not None
        auction = opened.auction.id

        for n in range(4):
            bidder = _node(tmp_path, f"Client#{n + 2}", grape.url)
            running = await _start_knowing(nursery, bidder, auction)
            mesh = bidder.mesh
            assert mesh is not None
            await wait_mesh(mesh, lambda m=mesh: _seller_up(m, info.node_id, seller_address)
                            and impostor_address in m.links
                            and m.links[impostor_address].backoff.failures >= 1,
                            "the seller up and the impostor refused")
            assert await _bid(bidder, auction, str(10 + n)) == ("accepted", str(10 + n))
            impostor_link = mesh.links[impostor_address]
            assert impostor_link.state == DOWN and impostor_link.node_id == b""
            assert "did not prove" in impostor_link.last_error
            assert mesh.link_for(info.node_id) is mesh.links[seller_address]
            # Re-probed and refused again, warned about once.
            await wait_mesh(mesh, lambda lk=impostor_link: lk.backoff.failures >= 2,
                            "a second probe of the impostor")
            await running.stop()

        assert impostor.hellos >= 8 and impostor.relayed >= 8  # the relay was tried
        assert impostor.bids == 0
        view = seller.ledger.auction(seller.ledger.resolve(auction))  # type: ignore[arg-type]
        assert view is not None and [str(b.amount) for b in view.bids] == ["10", "11", "12", "13"]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                    and impostor_address in r.getMessage()]
        # Once per node that probed it: the four bidders and the seller itself (whose
        # id it claims too).
        assert len(warnings) == 5, [r.getMessage() for r in warnings]
        assert all("did not prove" in r.getMessage() for r in warnings)
        nursery.cancel_scope.cancel()


async def test_a_seller_restarted_elsewhere_is_found_and_nothing_stays_stuck(
        tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        seller = _node(tmp_path, "Client#1", grape.url)
        seller_run = await _run_stoppable(nursery, seller)
        assert seller.identity is not None
        seller_id = seller.identity.node_id
        old_address = f"127.0.0.1:{seller.port}"
        impostor = Impostor(seller_id, "Client#1", old_address)
        impostor_scope = trio.CancelScope()

        async def impostor_task(task_status: trio.TaskStatus[str]) -> None:
            with impostor_scope:
                await run_impostor(impostor, grape.url, task_status=task_status)

        impostor_address = await nursery.start(impostor_task)
        opened = await seller.control_open(OpenRequest(item="Pic#1", start_amount="10",
                                                       currency="USDt"))
        assert opened.auction is not None
        auction = opened.auction.id
        early = _node(tmp_path, "Client#2", grape.url)
        await _start_knowing(nursery, early, auction)
        assert early.mesh is not None
        early_mesh = early.mesh
        await wait_mesh(early_mesh, lambda: _seller_up(early_mesh, seller_id, old_address),
                        "the seller up for the early bidder")
        assert await _bid(early, auction, "10") == ("accepted", "10")

        # The seller dies without a goodbye: the early bidder still thinks it up.
        async def no_goodbye() -> None:
            return None
        seller._goodbye = no_goodbye  # type: ignore[method-assign]
        await seller_run.stop()
        assert early_mesh.links[old_address].state == UP

        # A bidder that starts now sees only the impostor and a dead address.
        late = _node(tmp_path, "Client#3", grape.url)
        await _start_knowing(nursery, late, auction)  # from Client#2
        assert late.mesh is not None
        late_mesh = late.mesh
        await wait_mesh(late_mesh, lambda: impostor_address in late_mesh.links
                        and late_mesh.links[impostor_address].state == DOWN,
                        "the impostor refused")
        assert late_mesh.link_for(seller_id) is None
        assert await _bid(late, auction, "11") == (
            "refused", "SELLER_UNREACHABLE: the seller Client#1 is not reachable")

        # The seller comes back on a new port. The early bidder proves it there while its
        # old link still looks up: a duplicate, used once the old address is gone.
        seller2 = _node(tmp_path, "Client#1", grape.url, port=free_port())
        await _run_stoppable(nursery, seller2)
        new_address = f"127.0.0.1:{seller2.port}"
        assert new_address != old_address
        await wait_mesh(early_mesh, lambda: new_address in early_mesh.links
                        and early_mesh.links[new_address].state == DUPLICATE,
                        "the new address proved as a duplicate of the stale up link")
        await wait_mesh(late_mesh, lambda: _seller_up(late_mesh, seller_id, new_address),
                        "the restarted seller up for the late bidder")
        assert await _bid(early, auction, "12") == ("accepted", "12")
        assert early_mesh.links[new_address].state == UP
        assert early_mesh.links[old_address].state == DOWN
        assert await _bid(late, auction, "13") == ("accepted", "13")

        # The impostor goes away: bids keep flowing, nothing is left pointing at it.
        impostor_scope.cancel()
        assert await _bid(late, auction, "14") == ("accepted", "14")
        assert await _bid(early, auction, "15") == ("accepted", "15")
        for mesh in (early_mesh, late_mesh):
            assert mesh.link_for(seller_id) is mesh.links[new_address]
            assert mesh.links[impostor_address].node_id == b""
        assert impostor.bids == 0
        view = seller2.ledger.auction(seller2.ledger.resolve(auction))  # type: ignore[arg-type]
        assert view is not None
        assert [str(b.amount) for b in view.bids] == ["10", "12", "13", "14", "15"]
        nursery.cancel_scope.cancel()
