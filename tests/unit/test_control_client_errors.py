"""peer.cli.control_client: how each way a Control call can fail reaches the CLI.

NodeUnreachable (exit 3, nothing was sent), NodeLost (exit 3, the request may have
been carried out), NodeError (the node answered with a gRPC error).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.const import Status
from grpclib.exceptions import StreamTerminatedError

from peer.cli.control_client import NodeError, NodeLost, NodeUnreachable, _guarded, call

SOCKET = Path("/nowhere/control.sock")


async def _failing(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize(("raised", "expected", "says"), [
    (GRPCError(Status.INTERNAL, "boom"), NodeError, "INTERNAL: boom"),
    (TimeoutError(), NodeLost, "no answer within 30 s"),
    (ConnectionRefusedError(111, "Connection refused"), NodeUnreachable,
     "/nowhere/control.sock: [Errno 111] Connection refused"),
    (StreamTerminatedError("Connection lost"), NodeLost, "Connection lost"),
    (StreamTerminatedError(), NodeLost, "connection lost"),
    (ValueError("not HTTP/2"), NodeLost, "ValueError: not HTTP/2"),
])
def test_each_failure_becomes_the_error_the_cli_reports(
        raised: BaseException, expected: type[Exception], says: str) -> None:
    with pytest.raises(expected) as info:
        asyncio.run(_guarded(_failing(raised), SOCKET))
    assert str(info.value) == says
    assert info.value.__cause__ is raised


def test_no_socket_is_unreachable_before_anything_is_sent(tmp_path: Path) -> None:
    async def never(_stub: object) -> None:
        raise AssertionError("no call may be made")

    with pytest.raises(NodeUnreachable, match="no control socket at"):
        call(tmp_path / "control.sock", never)
