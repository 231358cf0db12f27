"""What one pushed event costs a receiver, against the stack it runs on.

``python -m bench.bench_transport`` prints one JSON object. One sender (plain
asyncio grpclib in this process) keeps one ``PushStream`` open and sends
``MESSAGES`` messages of one signed event each, one in flight, as a seller's
fan-out does at low rates. The figure is the receiving process's CPU time per
message (user + system, from ``/proc``), so the sender's own cost does not count.

Receivers, each its own process:
- ``asyncio``, ``trio_asyncio``, ``crossing``: ``bench._transport_server``'s do-nothing
  receivers (grpclib alone; under trio-asyncio; plus the node's crossing into trio);
- ``node``: a real node (``python -m peer serve``) that verifies, applies, fsyncs
  and prints every event, as every peer of a seller does for every bid.

``ratio_to_asyncio`` divides each by the plain-asyncio figure of the same run, so
what the stack costs and what the node's own work costs can be told apart.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

from grpclib.client import Channel
from grpclib.const import Cardinality

from bench import bench_core
from bench._harness import (
    PYTHON,
    ROOT,
    Cluster,
    log,
    process_cpu_s,
    read_json_line,
    stop_process,
)
from bench._transport_server import MODES
from peer.gen.auction.v1 import PushReply, PushRequest, SignedEvent
from peer.net.codec import LimitedCodec
from peer.net.mesh import PUSH_STREAM

MESSAGES = 3000
WARM_UP = 200


async def _push_each(port: int, pid: int, events: list[SignedEvent]) -> dict[str, float]:
    """Push ``events`` one per message; the receiver's CPU and the round trip, per message."""
    channel = Channel("127.0.0.1", port, codec=LimitedCodec())
    sender = b"\x07" * 32
    try:
        async with channel.request(PUSH_STREAM, Cardinality.STREAM_STREAM,
                                   PushRequest, PushReply) as stream:
            await stream.send_request()
            for event in events[:WARM_UP]:
                await stream.send_message(PushRequest(sender=sender, events=[event]))
                await stream.recv_message()
            measured = events[WARM_UP:]
            cpu_before, started = process_cpu_s(pid), time.perf_counter()
            for event in measured:
                await stream.send_message(PushRequest(sender=sender, events=[event]))
                if await stream.recv_message() is None:
                    raise RuntimeError("the receiver ended the stream")
            elapsed = time.perf_counter() - started
            cpu = process_cpu_s(pid) - cpu_before
            await stream.end()
    finally:
        channel.close()
    return {"receiver_cpu_us_per_msg": round(cpu * 1e6 / len(measured), 1),
            "round_trip_us": round(elapsed * 1e6 / len(measured), 1),
            "messages": len(measured)}


def _floor(mode: str, events: list[SignedEvent]) -> dict[str, float]:
    proc = subprocess.Popen([PYTHON, "-m", "bench._transport_server", mode], cwd=ROOT,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        port = int(read_json_line(proc)["port"])
        return asyncio.run(_push_each(port, proc.pid, events))
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def _node(events: list[SignedEvent]) -> dict[str, float]:
    with Cluster("bench-transport-") as cluster:
        # Plain, as the do-nothing receivers: what TLS adds is bench_tls's figure.
        (node,) = cluster.start_nodes(1, "Receiver", env={"AUCTION_PEER_TLS": "0"})
        result = asyncio.run(_push_each(node.port, node.proc.pid, events))
        if node.status().events != len(events):
            raise RuntimeError("the node did not apply every pushed event")
        return result


def run(messages: int = MESSAGES) -> dict[str, Any]:
    events = bench_core._workload(messages + WARM_UP)
    out: dict[str, Any] = {}
    for mode in MODES:
        out[mode] = _floor(mode, events)
        log(f"transport {mode}: {out[mode]}")
    out["node"] = _node(events)
    log(f"transport node: {out['node']}")
    base = out["asyncio"]["receiver_cpu_us_per_msg"]
    for value in list(out.values()):
        value["ratio_to_asyncio"] = round(value["receiver_cpu_us_per_msg"] / base, 2)
    out["node_work_us_per_event"] = round(
        out["node"]["receiver_cpu_us_per_msg"] - out["crossing"]["receiver_cpu_us_per_msg"], 1)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
