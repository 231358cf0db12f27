"""`python -m peer demo`: the reference scenario, end to end, in one process.

It starts an embedded localgrape (unless ``--grape`` names one), three real
nodes with temporary data dirs, and plays DESIGN.md section 1 step by step
through the nodes' control API, printing what every node sees. Then one timed
auction: a bid in its last seconds moves its end, and it ends by itself. It exits 0
only if all three nodes were told ``Client#2 -> 80 USDt`` and the timed auction's
winner.
"""

from __future__ import annotations

import functools
import io
import logging
import secrets
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

import trio

from peer.cli.output import Output
from peer.config import DEFAULT_SERVICE, NodeConfig
from peer.gen.auction.v1 import (
    BidRequest,
    CloseRequest,
    ControlReply,
    Notification,
    NotificationKind,
    OpenRequest,
)
from peer.node import Node

STEP_TIMEOUT = 15.0
WINNER_TEXT = "Client#2 -> 80 USDt"
# The timed auction: it ends TIMED_ENDS_IN_MS after it opens, and the last bid, placed
# TIMED_LAST_BID_S after the open, falls inside the TIMED_EXTEND_MS window and moves it.
TIMED_ENDS_IN_MS = 4_000
TIMED_EXTEND_MS = 3_000
TIMED_LAST_BID_S = 2.0
TIMED_WINNER_TEXT = "Client#3->Pic#3 ended: Client#2 -> 52 USDt"


class DemoFailed(Exception):
    pass


class Watcher:
    """Collects one node's notifications so the demo can wait on them."""

    def __init__(self, name: str, out: TextIO) -> None:
        self.name = name
        self.out = out
        self.seen: list[Notification] = []
        self.changed = trio.Event()

    async def run(self, node: Node) -> None:
        with node.control_subscribe() as notes:
            async for note in notes:
                if note.kind in (NotificationKind.PEER_UP, NotificationKind.PEER_DOWN):
                    continue
                self.seen.append(note)
                self.out.write(f"    [{self.name}] {note.text}\n")
                self.changed.set()
                self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[Notification], bool], what: str) -> None:
        with trio.move_on_after(STEP_TIMEOUT):
            while not any(predicate(n) for n in self.seen):
                await self.changed.wait()
            return
        raise DemoFailed(f"{self.name} never saw {what}")


def _check(reply: ControlReply, what: str) -> ControlReply:
    if reply.rejected is not None:
        raise DemoFailed(f"{what} refused: {reply.rejected.code.name} ({reply.rejected.reason})")
    return reply


def demo_service(grape_url: str | None, service: str | None) -> str:
    """The Grape service name the demo's nodes use.

    On someone's grape (``--grape``) the default is a fresh name: nodes already
    announced there under ``auction`` would join the demo's mesh and break it (or
    be disturbed by it). The embedded grapes hold only the demo's nodes.
    """
    if service:
        return service
    return f"auction-demo-{secrets.token_hex(4)}" if grape_url else DEFAULT_SERVICE


async def play(grape_url: str | None, root: Path, out: TextIO,
               service: str = DEFAULT_SERVICE) -> None:
    """Run the whole scenario; raises DemoFailed on the first thing that goes wrong."""
    async with trio.open_nursery() as nursery:
        grape_urls = [grape_url] if grape_url else await _start_localgrapes(nursery, out)
        out.write(f"service name: {service}\n")
        nodes: list[Node] = []
        watchers: list[Watcher] = []
        for i in (1, 2, 3):
            name = f"Client#{i}"
            # Spread the nodes over the grapes, as nodes on different hosts would be.
            home = grape_urls[(i - 1) % len(grape_urls)]
            config = NodeConfig(name=name, data_dir=root / f"client{i}", grape_urls=(home,),
                                service=service,
                                announce_interval=1.0, lookup_interval=0.3,
                                anti_entropy_interval=1.0)
            node = Node(config, Output(json_lines=False, stream=io.StringIO()))
            info = await nursery.start(node.run)
            out.write(f"started {name} on port {info.port}\n")
            watcher = Watcher(name, out)
            nursery.start_soon(watcher.run, node)
            nodes.append(node)
            watchers.append(watcher)
        await _wait_for_mesh(nodes)
        out.write("all three nodes see each other\n\n")
        c1, c2, c3 = nodes

        async def step(title: str, action: Callable[[], Awaitable[ControlReply]]) -> None:
            out.write(f"* {title}\n")
            _check(await action(), title)

        async def everyone_sees(kind: NotificationKind, text: str) -> None:
            for w in watchers:
                await w.wait_for(lambda n: n.kind == kind and text in n.text, repr(text))

        for seller, item, price in ((c1, "Pic#1", "75"), (c2, "Pic#2", "60")):
            name = seller.config.name
            request = OpenRequest(item=item, start_amount=price, currency="USDt")
            await step(f"{name} opens {item} at {price} USDt",
                       functools.partial(seller.control_open, request))
            await everyone_sees(NotificationKind.OPENED, item)
        for bidder, amount in ((c2, "75"), (c3, "75.5"), (c2, "80")):
            name = bidder.config.name
            bid = BidRequest(auction="Client#1->Pic#1", amount=amount)
            await step(f"{name} bids {amount} USDt on Client#1->Pic#1",
                       functools.partial(bidder.control_bid, bid))
            await everyone_sees(NotificationKind.BID, f"{name} bid {amount} USDt")
        await step("Client#1 closes Pic#1",
                   lambda: c1.control_close(CloseRequest(auction="Client#1->Pic#1")))
        await everyone_sees(NotificationKind.CLOSED, WINNER_TEXT)
        out.write(f"\nall three nodes were notified: {WINNER_TEXT}\n\n")

        # A timed auction: nobody closes it; a bid in its last 3 s moves its end.
        request = OpenRequest(item="Pic#3", start_amount="50", currency="USDt",
                              ends_in_ms=TIMED_ENDS_IN_MS, extend_ms=TIMED_EXTEND_MS,
                              min_increment="1")
        opened_at = trio.current_time()
        await step("Client#3 opens Pic#3 at 50 USDt, ending in 4s; a bid in the last 3s"
                   " extends it; min increment 1", functools.partial(c3.control_open, request))
        await everyone_sees(NotificationKind.OPENED, "Pic#3")
        await step("Client#1 bids 50 USDt on Client#3->Pic#3", functools.partial(
            c1.control_bid, BidRequest(auction="Client#3->Pic#3", amount="50")))
        # The scenario needs this bid inside the last 3 s, so it waits for that moment.
        await trio.sleep_until(opened_at + TIMED_LAST_BID_S)
        await step("Client#2 bids 52 USDt on Client#3->Pic#3, inside the last 3s",
                   functools.partial(c2.control_bid,
                                     BidRequest(auction="Client#3->Pic#3", amount="52")))
        await everyone_sees(NotificationKind.BID, "Client#2 bid 52 USDt on Client#3->Pic#3;"
                                                  " end extended")
        out.write("* nobody closes Client#3->Pic#3: it ends by itself\n")
        await everyone_sees(NotificationKind.CLOSED, TIMED_WINNER_TEXT)
        out.write(f"\nall three nodes were notified: {TIMED_WINNER_TEXT}\n")
        nursery.cancel_scope.cancel()


async def _start_localgrapes(nursery: trio.Nursery, out: TextIO) -> list[str]:
    """Two embedded localgrapes bootstrapped to each other, as a real deployment runs."""
    import localgrape

    first = await nursery.start(localgrape.serve, localgrape.GrapeConfig(
        api_port=0, dht_port=0, bind="127.0.0.1"))
    second = await nursery.start(localgrape.serve, localgrape.GrapeConfig(
        api_port=0, dht_port=0, bind="127.0.0.1",
        bootstrap=(f"127.0.0.1:{first.dht_port}",)))
    urls: list[str] = [first.url, second.url]
    out.write(f"embedded localgrapes on {urls[0]} and {urls[1]} (DHT ports "
              f"{first.dht_port} and {second.dht_port}, bootstrapped to each other)\n")
    return urls


async def _wait_for_mesh(nodes: list[Node]) -> None:
    meshes = [n.mesh for n in nodes if n.mesh is not None]
    with trio.move_on_after(STEP_TIMEOUT):
        while True:
            # Taken before the check, so a change right after it still wakes us.
            changes = [mesh.next_change() for mesh in meshes]
            if len(meshes) == len(nodes) and all(
                    mesh.statistics().up == len(nodes) - 1 for mesh in meshes):
                return
            # Wake on any node's mesh change; discovery polls Grape meanwhile.
            async with trio.open_nursery() as waiters:
                for change in changes:
                    waiters.start_soon(_wait_and_cancel, change, waiters.cancel_scope)
    raise DemoFailed("the nodes did not discover each other in time:\n"
                     + "\n".join(_mesh_report(n) for n in nodes))


def _mesh_report(node: Node) -> str:
    """One line per node: which peers it knows and in what state (to say what failed)."""
    if node.mesh is None:
        return f"  {node.config.name}: not started"
    links = [f"{link.name or '?'}@{link.address} {link.state}"
             + (f" ({link.last_error})" if link.last_error else "")
             for link in node.mesh.links.values()]
    return f"  {node.config.name}: " + ("; ".join(links) or "no peer addresses from Grape")


async def _wait_and_cancel(change: trio.Event, scope: trio.CancelScope) -> None:
    await change.wait()
    scope.cancel()


def main(grape_url: str | None = None, *, service: str | None = None,
         log_level: int = logging.WARNING) -> int:
    """Entry point for `python -m peer demo`; 0 only if every node saw the winner."""
    # The demo prints its own story; node logs only for warnings unless -v asks.
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("grpclib").setLevel(logging.CRITICAL)
    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="auction-demo-") as tmp:
        failures: list[BaseException] = []
        try:
            trio.run(play, grape_url, Path(tmp), out, demo_service(grape_url, service))
        except* DemoFailed as group:
            failures.extend(group.exceptions)
    for failure in failures:
        out.write(f"\ndemo FAILED: {failure}\n")
    return 1 if failures else 0
