"""A raw HTTP/2 client that sends what grpclib's client never would, for hostile tests.

Blocking sockets and the ``h2`` state machine (a grpclib dependency), so a test can
run it in a thread beside anything else and see exactly what the server answered.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.exceptions import ProtocolError

from peer.net.tls import client_context

__all__ = ["DeclaredHuge", "declare_huge", "open_h2", "rss_bytes"]

MiB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class DeclaredHuge:
    """What happened to one declared-huge message."""

    sent: int = 0  # body bytes the server let us send (flow control)
    grpc_status: str | None = None
    reset: bool = False
    goaway: bool = False
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def open_h2(port: int, timeout: float = 10.0, *, tls: bool = False
            ) -> tuple[socket.socket, H2Connection]:
    """An HTTP/2 client connection, over TLS as a node's public port speaks it with
    ``tls`` (``tests.support.node_tls()`` says whether the nodes a test starts do)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        sock = client_context().wrap_socket(sock)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def _grpc_headers(path: str) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "127.0.0.1"), ("content-type", "application/grpc"),
            ("te", "trailers")]


def declare_huge(port: int, *, path: str = "/auction.v1.Peer/Push",
                 declared: int = 2**31 - 1, chunk: int = 16 * 1024,
                 max_send: int = 256 * MiB, timeout: float = 60.0, tls: bool = False
                 ) -> DeclaredHuge:
    """Declare a ``declared``-byte message and stream zeros in ``chunk``-byte frames,
    as fast as flow control allows, until the server refuses it or ``max_send``."""
    result = DeclaredHuge()
    sock, conn = open_h2(port, tls=tls)
    try:
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, _grpc_headers(path))
        conn.send_data(stream_id, b"\x00" + declared.to_bytes(4, "big"))
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + timeout
        zeros = b"\x00" * chunk
        while time.monotonic() < deadline and result.sent < max_send:
            window = min(conn.local_flow_control_window(stream_id), chunk)
            if not (result.reset or result.grpc_status) and window > 0:
                try:
                    conn.send_data(stream_id, zeros[:window])
                except ProtocolError:
                    break  # the stream closed under us
                result.sent += window
                sock.sendall(conn.data_to_send())
            wait = 0.0 if window > 0 else 1.0
            readable, _, _ = select.select([sock], [], [], wait)
            if readable:
                data = sock.recv(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    _note(result, event)
                sock.sendall(conn.data_to_send())
            if result.reset or result.goaway:
                break
        return result
    finally:
        sock.close()


def _note(result: DeclaredHuge, event: object) -> None:
    if isinstance(event, (ResponseReceived, TrailersReceived)):
        headers = [(bytes(k), bytes(v)) for k, v in event.headers or []]
        result.headers += headers
        for key, value in headers:
            if key == b"grpc-status":
                result.grpc_status = value.decode()
    elif isinstance(event, StreamReset):
        result.reset = True
    elif isinstance(event, ConnectionTerminated):
        result.goaway = True
    elif isinstance(event, StreamEnded):
        pass
