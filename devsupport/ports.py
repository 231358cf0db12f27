"""Ports that are free right now on 127.0.0.1, for the processes tests and benchmarks start."""

from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free right now on 127.0.0.1 for ``kind`` (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_tcp_udp_port() -> int:
    """A port free for both TCP and UDP (grape binds UDP on --dp, HTTP on --aph)."""
    for _ in range(100):
        port = free_port(socket.SOCK_STREAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("0.0.0.0", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free for both TCP and UDP")
