"""Hello and Prove against a running node, over the wire."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import trio
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import localgrape
from peer.cli.output import Output
from peer.config import NodeConfig
from peer.core.handshake import HandshakeError, new_challenge, sign_caller, verify_callee
from peer.core.identity import Identity
from peer.gen.auction.v1 import HelloReply, HelloRequest, PeerStub, ProveRequest
from peer.net import aio
from peer.net.h2_guard import GuardedChannel
from peer.net.tls import client_context
from peer.node import Node
from peer.storage import tls_cert

ALICE = Identity.from_seed(b"\x0a" * 32, "Alice")


async def _with_node(tmp_path: Path, body: object, *, tls: bool = False) -> None:
    async with trio.open_nursery() as nursery:
        grape = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
        node = Node(NodeConfig(name="Client#1", data_dir=tmp_path / "c1",
                               grape_urls=(grape.url,), tls=tls),
                    Output(json_lines=True, stream=io.StringIO()))
        info = await nursery.start(node.run)
        async with aio.open_loop() as loop:
            bridge = aio.Bridge(loop)
            channels: list[Channel] = []

            async def call(method: str, request: object) -> object:
                async def on_asyncio() -> object:
                    if not channels:
                        channels.append(GuardedChannel(
                            "127.0.0.1", info.port, ssl=client_context() if tls else None))
                    return await getattr(PeerStub(channels[0]), method)(request, timeout=5)
                return await bridge.to_trio(on_asyncio)

            try:
                await body(call, info)  # type: ignore[operator]
            finally:
                for channel in channels:
                    channel.close()
        nursery.cancel_scope.cancel()


async def _status(call: object, method: str, request: object) -> Status | None:
    try:
        await call(method, request)  # type: ignore[operator]
    except GRPCError as exc:
        return exc.status
    return None


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_a_node_proves_its_id_for_its_own_address_only(tmp_path: Path, tls: bool
                                                              ) -> None:
    async def body(call: object, info: object) -> None:
        port = info.port  # type: ignore[attr-defined]
        node_id = info.node_id  # type: ignore[attr-defined]
        address = f"127.0.0.1:{port}"
        na = new_challenge()
        reply = await call("hello", HelloRequest(  # type: ignore[operator]
            node_id=ALICE.node_id, challenge=na, address=address))
        assert isinstance(reply, HelloReply) and reply.node_id == node_id
        # Over TLS the proof covers the certificate this connection saw, and nothing
        # else: a proof checked as if the connection were plain fails.
        binding = tls_cert.load_or_create(tmp_path / "c1").binding if tls else b""
        verify_callee(na, ALICE.node_id, address, node_id, reply.challenge, reply.proof,
                      binding)
        with pytest.raises(HandshakeError):
            verify_callee(na, ALICE.node_id, address, node_id, reply.challenge, reply.proof,
                          b"" if tls else b"\x00" * 32)

        # Our answer is taken once; the same Prove again, or a wrong one, is refused.
        if tls:  # a Prove over the certificate it did not sign is refused too
            unbound = ProveRequest(node_id=ALICE.node_id, challenge=reply.challenge,
                                   proof=sign_caller(ALICE, na, node_id, reply.challenge,
                                                     address))
            assert await _status(call, "prove", unbound) == Status.INVALID_ARGUMENT
            na = new_challenge()
            reply = await call("hello", HelloRequest(  # type: ignore[operator]
                node_id=ALICE.node_id, challenge=na, address=address))
        prove = ProveRequest(node_id=ALICE.node_id, challenge=reply.challenge,
                             proof=sign_caller(ALICE, na, node_id, reply.challenge, address,
                                               binding))
        assert await _status(call, "prove", prove) is None
        assert await _status(call, "prove", prove) == Status.INVALID_ARGUMENT
        wrong = ProveRequest(node_id=ALICE.node_id, challenge=reply.challenge,
                             proof=b"\x00" * 64)
        assert await _status(call, "prove", wrong) == Status.INVALID_ARGUMENT

        # The address of someone relaying to it is not its address: it signs nothing.
        for other in (f"127.0.0.1:{port + 1}", f"127.0.0.2:{port}", "relay.example:80", ""):
            hello = HelloRequest(node_id=ALICE.node_id, challenge=new_challenge(),
                                 address=other)
            assert await _status(call, "hello", hello) == Status.INVALID_ARGUMENT, other
        # An older caller (no challenge) gets the plain reply, which proves nothing.
        plain = await call("hello", HelloRequest(node_id=ALICE.node_id))  # type: ignore[operator]
        assert isinstance(plain, HelloReply) and plain.proof == b""

    await _with_node(tmp_path, body, tls=tls)


async def test_malformed_handshakes_are_refused_and_the_node_goes_on(tmp_path: Path) -> None:
    async def body(call: object, info: object) -> None:
        address = f"127.0.0.1:{info.port}"  # type: ignore[attr-defined]
        statuses: list[Status | None] = []

        @settings(max_examples=40, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])
        @given(node_id=st.binary(max_size=40), challenge=st.binary(min_size=1, max_size=40),
               proof=st.binary(max_size=80))
        def one(node_id: bytes, challenge: bytes, proof: bytes) -> None:
            hello = HelloRequest(node_id=node_id, challenge=challenge, address=address)
            prove = ProveRequest(node_id=node_id, challenge=challenge, proof=proof)
            statuses.append(trio.from_thread.run(_status, call, "hello", hello))
            statuses.append(trio.from_thread.run(_status, call, "prove", prove))

        await trio.to_thread.run_sync(one)
        # Every malformed field and every unknown challenge: INVALID_ARGUMENT, never a
        # crash (UNKNOWN); a well-formed Hello from anyone is answered.
        assert set(statuses) <= {None, Status.INVALID_ARGUMENT}
        assert Status.INVALID_ARGUMENT in statuses
        reply = await call("hello", HelloRequest(  # type: ignore[operator]
            node_id=ALICE.node_id, challenge=new_challenge(), address=address))
        assert isinstance(reply, HelloReply) and len(reply.proof) == 64

    await _with_node(tmp_path, body)
