"""Client bytes never reach UNKNOWN: every Peer rpc answers random and type-confused
bodies with OK or INVALID_ARGUMENT (a real `serve` process, raw request bodies)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.encoding.base import CodecBase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peer.core.wire import varint
from tests.e2e.harness import NodeProc, nodes
from tests.support import close_now, node_ssl, running_grapes

# Every Peer rpc and how it is called.
RPCS: dict[str, Cardinality] = {
    "Hello": Cardinality.UNARY_UNARY,
    "PlaceBid": Cardinality.UNARY_UNARY,
    "Push": Cardinality.UNARY_UNARY,
    "PushStream": Cardinality.STREAM_STREAM,
    "Sync": Cardinality.UNARY_STREAM,
    "Leave": Cardinality.UNARY_UNARY,
}


class RawCodec(CodecBase):
    """Sends request bodies as given; returns reply bodies undecoded."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        assert isinstance(message, bytes)
        return message

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


class RawPeer:
    """One connection to a node's Peer service, on a private asyncio loop."""

    def __init__(self, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.channel = self.loop.run_until_complete(self._open(port))

    @staticmethod
    async def _open(port: int) -> Channel:
        return Channel("127.0.0.1", port, codec=RawCodec(), ssl=node_ssl())

    def status(self, rpc: str, body: bytes) -> Status:
        return self.loop.run_until_complete(self._status(rpc, body))

    async def _status(self, rpc: str, body: bytes) -> Status:
        try:
            async with asyncio.timeout(20):
                await self._call(rpc, body)
        except GRPCError as exc:
            return exc.status
        return Status.OK

    async def _call(self, rpc: str, body: bytes) -> None:
        async with self.channel.request(f"/auction.v1.Peer/{rpc}", RPCS[rpc], bytes,
                                        bytes) as stream:
            await stream.send_message(body, end=True)
            async for _ in _replies(stream):
                pass

    def close(self) -> None:
        close_now(self.channel)
        self.loop.close()


async def _replies(stream: Any) -> AsyncIterator[bytes]:
    while (reply := await stream.recv_message()) is not None:
        yield reply


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProc, RawPeer]]:
    tmp = Path(tmp_path_factory.mktemp("fuzz"))
    with running_grapes([sys.executable, "-m", "localgrape"], count=1) as grapes, \
            nodes(tmp, [grapes[0].url], ["Client#1"]) as (node,):
        assert node.cli("open", "Pic#1", "75").code == 0
        raw = RawPeer(int(node.ready["port"]))
        try:
            yield node, raw
        finally:
            raw.close()


# A field of any number with any wire type: what betterproto2 accepts without checking.
_field = st.builds(
    lambda number, wire, payload: varint(number << 3 | wire) + {
        0: varint(int.from_bytes(payload[:8].ljust(1, b"\x01"), "little")),
        1: payload[:8].ljust(8, b"\x00"),
        2: varint(len(payload)) + payload,
        5: payload[:4].ljust(4, b"\x00"),
    }[wire],
    st.integers(1, 12), st.sampled_from([0, 1, 2, 5]), st.binary(max_size=40))
type_confused = st.lists(_field, min_size=1, max_size=6).map(b"".join)


@pytest.mark.parametrize("rpc", sorted(RPCS))
@pytest.mark.parametrize("body", [b"\x08\x01", b"\x10\x01", b"\x0a\x01\x08",
                                  b"\x12\x02\x08\x01", b"\x0a\x02\x08\x01",
                                  b"\x13"])
def test_known_type_confusions_are_invalid_argument(
        peer: tuple[NodeProc, RawPeer], rpc: str, body: bytes) -> None:
    _, raw = peer
    status = raw.status(rpc, body)
    assert status in (Status.OK, Status.INVALID_ARGUMENT), (rpc, body, status)
    if body == b"\x08\x01":  # field 1 as a varint: every request's field 1 is bytes
        assert status == Status.INVALID_ARGUMENT, rpc


@pytest.mark.parametrize("rpc", sorted(RPCS))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=200), type_confused))
def test_random_bodies_never_reach_unknown(
        peer: tuple[NodeProc, RawPeer], rpc: str, body: bytes) -> None:
    _, raw = peer
    status = raw.status(rpc, body)
    assert status in (Status.OK, Status.INVALID_ARGUMENT), (rpc, body.hex(), status)


def test_the_node_survived_the_fuzzing(peer: tuple[NodeProc, RawPeer]) -> None:
    node, raw = peer
    assert raw.status("Hello", b"") == Status.OK
    assert node.cli("list", "--json").code == 0
    assert not any("Traceback" in line or "Application error" in line
                   for line in node.stderr_lines)
