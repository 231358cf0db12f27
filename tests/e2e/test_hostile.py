"""Bad input on a node's public port is refused, and the node keeps serving with its data."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status

from peer.core.auctions import AuctionKey
from peer.core.identity import Identity
from peer.core.signed_events import make_signed_bid
from peer.gen.auction.v1 import (
    Event,
    Goodbye,
    Head,
    HelloReply,
    HelloRequest,
    LeaveRequest,
    Open,
    PeerStub,
    PlaceBidReply,
    PushRequest,
    RejectCode,
    SignedBid,
    SignedEvent,
    SyncRequest,
)
from peer.net.rpc import MAX_EVENTS_PER_PUSH, MAX_HEADS
from peer.storage import key_file, paths
from tests.e2e.harness import nodes
from tests.support import close_now, node_ssl, running_grapes


@pytest.fixture
def one_grape() -> Iterator[str]:
    with running_grapes([sys.executable, "-m", "localgrape"], count=1) as grapes:
        yield grapes[0].url


def _grpc(port: int, request: object, method: str, timeout: float = 10.0) -> object:
    async def main() -> object:
        channel = Channel("127.0.0.1", port, ssl=node_ssl())
        try:
            call = getattr(PeerStub(channel), method)
            if method == "push_stream":
                return [reply async for reply in call(request, timeout=timeout)]
            return await call(request, timeout=timeout)
        finally:
            close_now(channel)

    return asyncio.run(main())


def _status_of(port: int, request: object, method: str) -> Status:
    with pytest.raises(GRPCError) as info:
        _grpc(port, request, method)
    return info.value.status


def _open_event(identity: Identity, item: str) -> Event:
    return Event(author=identity.node_id, seq=1, prev=b"", time_ms=1,
                 author_name=identity.name, open=Open(item=item, start_amount="1",
                                                      currency="USDt"))


def test_garbage_forgeries_and_oversized_messages_are_refused(
        tmp_path: Path, one_grape: str) -> None:
    with nodes(tmp_path, [one_grape], ["Client#1"]) as (node,):
        port = int(node.ready["port"])
        assert node.cli("open", "Pic#1", "75").code == 0

        # Not HTTP/2 at all: the connection is dropped, the node does not care.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"\x00\xffGET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 64)
            raw.settimeout(5)
            try:
                while raw.recv(4096):
                    pass
            except OSError:
                pass

        mallory = Identity.generate("Mallory")
        event = _open_event(mallory, "Forged")
        data = bytes(event)
        forged = SignedEvent(event=data, signature=b"\x01" * 64)
        altered = SignedEvent(event=data[:-1] + bytes([data[-1] ^ 1]),
                              signature=mallory.sign(data))
        garbage = SignedEvent(event=b"\xff\xfe\xfd not protobuf", signature=b"")
        for bad in (forged, altered, garbage):
            status = _status_of(port, PushRequest(sender=mallory.node_id, events=[bad]), "push")
            assert status == Status.INVALID_ARGUMENT

        # A bid that is junk, or not signed by its bidder, gets a readable rejection
        # with its code, not a crash.
        reply = _grpc(port, SignedBid(bid=b"junk", signature=b"x"), "place_bid")
        assert isinstance(reply, PlaceBidReply) and reply.rejected is not None
        assert reply.rejected.code == RejectCode.BAD_EVENT and "malformed bid" in (
            reply.rejected.reason)
        key = AuctionKey(bytes.fromhex(node.ready["node_id"]), 1)
        real = make_signed_bid(mallory, key, "80", "USDt", 1, 1)
        unsigned = SignedBid(bid=real.bid, signature=Identity.generate("Eve").sign(real.bid))
        reply = _grpc(port, unsigned, "place_bid")
        assert isinstance(reply, PlaceBidReply) and reply.rejected is not None
        assert reply.rejected.code == RejectCode.BAD_SIGNATURE

        huge = PushRequest(sender=b"x", events=[SignedEvent(event=b"\x00" * (5 * 1024 * 1024))])
        assert _status_of(port, huge, "push") == Status.RESOURCE_EXHAUSTED

        # The same over the long-lived PushStream peers use: an empty batch is answered,
        # then the bad one ends the stream with the same status.
        for bad in (forged, altered, garbage):
            batches = [PushRequest(sender=mallory.node_id, events=[]),
                       PushRequest(sender=mallory.node_id, events=[bad])]
            assert _status_of(port, batches, "push_stream") == Status.INVALID_ARGUMENT
        assert _status_of(port, [huge], "push_stream") == Status.RESOURCE_EXHAUSTED

        # Still serving, nothing lost, nothing forged got in.
        hello = _grpc(port, HelloRequest(node_id=mallory.node_id, name="Mallory"), "hello")
        assert getattr(hello, "name", None) == "Client#1"
        listed = node.cli("list", "--all", "--json")
        assert listed.code == 0, listed
        assert [a["label"] for a in json.loads(listed.stdout)] == ["Client#1->Pic#1"]
        status = node.cli("status", "--json")
        assert status.code == 0 and json.loads(status.stdout)["events"] == 1
        assert not any("Traceback" in line for line in node.stderr_lines)


def test_sync_with_unknown_heads_streams_everything(tmp_path: Path, one_grape: str) -> None:
    with nodes(tmp_path, [one_grape], ["Client#1"]) as (node,):
        port = int(node.ready["port"])
        for item in ("A", "B", "C"):
            assert node.cli("open", item, "1").code == 0

        async def pull() -> list[SignedEvent]:
            channel = Channel("127.0.0.1", port, ssl=node_ssl())
            try:
                got: list[SignedEvent] = []
                async for page in PeerStub(channel).sync(SyncRequest(heads=[]), timeout=10):
                    got.extend(page.events)
                return got
            finally:
                close_now(channel)

        events = asyncio.run(pull())
        assert [Event.parse(e.event).seq for e in events] == [1, 2, 3]


# Decoding 100,000 heads takes the node seconds (more under coverage on a busy
# machine); these calls are about the bound, not about speed.
SLOW_CALL = 90.0


def _error_of(port: int, request: object, method: str) -> GRPCError:
    with pytest.raises(GRPCError) as info:
        if method == "sync":
            async def pull() -> None:
                channel = Channel("127.0.0.1", port, ssl=node_ssl())
                try:
                    async for _ in PeerStub(channel).sync(request, timeout=SLOW_CALL):
                        pass
                finally:
                    close_now(channel)

            asyncio.run(pull())
        else:
            _grpc(port, request, method, SLOW_CALL)
    return info.value


def test_oversized_head_lists_and_push_batches_are_refused_by_count(
        tmp_path: Path, one_grape: str) -> None:
    with nodes(tmp_path, [one_grape], ["Client#1"]) as (node,):
        port = int(node.ready["port"])
        # MAX_HEADS: a Hello or Sync naming more authors than that is refused unread;
        # exactly that many is answered.
        too_many = [Head(author=b"", seq=1)] * (MAX_HEADS + 1)
        for method, request in (("hello", HelloRequest(heads=too_many)),
                                ("sync", SyncRequest(heads=too_many))):
            error = _error_of(port, request, method)
            assert (error.status, error.message) == (Status.INVALID_ARGUMENT, "too many heads")
        hello = _grpc(port, HelloRequest(heads=too_many[:MAX_HEADS]), "hello", SLOW_CALL)
        assert isinstance(hello, HelloReply) and hello.name == "Client#1"

        # MAX_EVENTS_PER_PUSH, on both push methods.
        batch = PushRequest(sender=b"x", events=[SignedEvent(event=b"e")] * (
            MAX_EVENTS_PER_PUSH + 1))
        for method, request in (("push", batch), ("push_stream", [batch])):
            error = _error_of(port, request, method)
            assert error.status == Status.INVALID_ARGUMENT
            assert error.message == f"at most {MAX_EVENTS_PER_PUSH} events per push"
        status = node.cli("status", "--json")
        assert status.code == 0 and status.json()["events"] == 0


def test_a_forged_or_garbled_leave_changes_nothing_and_a_signed_one_is_heard(
        tmp_path: Path, one_grape: str) -> None:
    with nodes(tmp_path, [one_grape], ["Client#1", "Client#2"]) as (c1, c2):
        c2.wait_peers(1)
        port = int(c2.ready["port"])
        c1_id = bytes.fromhex(c1.ready["node_id"])
        # Said now: a goodbye older than the link is a replay, and ignored.
        goodbye = bytes(Goodbye(node_id=c1_id, time_ms=int(time.time() * 1000)))
        mallory = Identity.generate("Mallory")
        for bad in (LeaveRequest(goodbye=goodbye, signature=mallory.sign(goodbye)),
                    LeaveRequest(goodbye=goodbye, signature=b""),
                    LeaveRequest(goodbye=b"\xff\xfe not a goodbye", signature=bytes(64))):
            error = _error_of(port, bad, "leave")
            assert error.status == Status.INVALID_ARGUMENT
        # The refusal came after the decision: Client#1 is still up on Client#2.
        peers = c2.cli("status", "--json").json()["peers"]
        assert [(p["name"], p["up"]) for p in peers] == [("Client#1", True)]
        assert not [r for r in c2.lines if r.get("event") == "peer_down"]

        # Client#1's own goodbye, signed with its key, is heard at once.
        key = key_file.load_or_create(paths.key_path(c1.data_dir), "Client#1")
        assert key.node_id == c1_id
        _grpc(port, LeaveRequest(goodbye=goodbye, signature=key.sign(goodbye)), "leave")
        down = c2.wait_for(lambda r: r.get("event") == "peer_down", what="peer_down")
        assert (down["peer"], down["reason"]) == ("Client#1", "left")
        assert not any("Traceback" in line for line in c2.stderr_lines)
