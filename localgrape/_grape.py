"""Binding the sockets and running one grape: :func:`serve`."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass
from functools import partial

import trio

from ._server import GrapeApp, Timeouts, serve_connection
from ._store import LocalDht

__all__ = ["BoundGrape", "GrapeBindError", "GrapeConfig", "serve"]

log = logging.getLogger("localgrape")


@dataclass(frozen=True)
class GrapeConfig:
    """How to run a grape; the fields mirror the grape CLI flags.

    Attributes:
        api_port: ``--aph``, the HTTP API port (0: any free port).
        dht_port: ``--dp``, the DHT UDP port (0: any free port).
        bind: ``-b``, the HTTP listen address and the host of this grape's own
            announce records; None listens on all interfaces and stores no own
            record (grape-http-api.md section 4).
        bootstrap: ``--bn`` peers. Accepted but not joined: localgrape has no DHT
            networking yet and answers as a lone grape.
        announce_max_age_ms: ``--dpa``; None keeps records forever (section 6).
        max_payload_size: ``--check_maxPayloadSize``; None means no limit.
    """

    api_port: int = 0
    dht_port: int = 0
    bind: str | None = "127.0.0.1"
    bootstrap: tuple[str, ...] = ()
    announce_max_age_ms: int | None = None
    max_payload_size: int | None = None


@dataclass(frozen=True)
class BoundGrape:
    """A running grape's actual addresses, reported by ``nursery.start(serve, ...)``.

    Attributes:
        api_port: the bound HTTP port.
        dht_port: the bound UDP port.
        host: the HTTP listen address (``0.0.0.0`` when not bound to one).
    """

    api_port: int
    dht_port: int
    host: str

    @property
    def url(self) -> str:
        """The base URL a local client uses, e.g. ``http://127.0.0.1:30001``."""
        host = self.host
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return f"http://127.0.0.1:{self.api_port}"
        if address.is_unspecified or address.version != 4:
            host = "127.0.0.1"
        return f"http://{host}:{self.api_port}"


class GrapeBindError(OSError):
    """A port or address could not be bound (in use, not local, no permission)."""


def _describe(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available on this host"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return exc.strerror or str(exc)


async def _bind_udp(port: int) -> trio.socket.SocketType:
    # The DHT socket always binds to all interfaces (section 1), like k-rpc's udp4.
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        await sock.bind(("0.0.0.0", port))
    except OSError as exc:
        sock.close()
        raise GrapeBindError(exc.errno, f"cannot bind DHT UDP port 0.0.0.0:{port} "
                                        f"(--dp): {_describe(exc)}") from exc
    return sock


async def _bind_http(config: GrapeConfig) -> list[trio.SocketListener]:
    host = config.bind if config.bind is not None else "0.0.0.0"
    try:
        return await trio.open_tcp_listeners(config.api_port, host=host)
    except OSError as exc:
        raise GrapeBindError(exc.errno, f"cannot listen on HTTP {host}:{config.api_port} "
                                        f"(--aph, -b): {_describe(exc)}") from exc


async def _drop_datagrams(sock: trio.socket.SocketType) -> None:
    """Read and ignore DHT datagrams until cancelled.

    This is where the KRPC layer will plug in; until then the port is only held,
    so that port clashes show up as they do with the real grape.
    """
    with sock:
        while True:
            try:
                await sock.recv(65536)
            except OSError:
                await trio.sleep(0.1)  # e.g. ICMP errors surfacing on Linux


async def serve(config: GrapeConfig, *,
                task_status: trio.TaskStatus[BoundGrape] = trio.TASK_STATUS_IGNORED,
                timeouts: Timeouts | None = None) -> None:
    """Run a grape until cancelled.

    Binds the UDP and HTTP ports, then reports them with
    ``task_status.started(BoundGrape(...))``, so that
    ``bound = await nursery.start(serve, GrapeConfig())`` works with port 0.

    Args:
        config: ports, bind address and options.
        task_status: trio's start protocol.
        timeouts: connection deadlines (tests shorten them).

    Raises:
        GrapeBindError: a port or address could not be bound.
    """
    udp = await _bind_udp(config.dht_port)
    try:
        listeners = await _bind_http(config)
    except BaseException:
        udp.close()
        raise
    dht_port = udp.getsockname()[1]
    api_port = listeners[0].socket.getsockname()[1]
    host = config.bind if config.bind is not None else "0.0.0.0"
    dht = LocalDht(dht_port=dht_port, bind=config.bind,
                   announce_max_age_ms=config.announce_max_age_ms)
    app = GrapeApp(dht, max_payload_size=config.max_payload_size, timeouts=timeouts)
    log.info("localgrape: HTTP API on %s:%d, DHT UDP on 0.0.0.0:%d (node id %s)",
             host, api_port, dht_port, dht.node_id_hex)
    if config.bootstrap:
        log.info("localgrape: bootstrap nodes %s accepted but not joined "
                 "(no DHT networking yet: this grape answers as a lone grape)",
                 ",".join(config.bootstrap))
    if config.announce_max_age_ms:
        log.info("localgrape: announced records expire %d ms after their last announce",
                 config.announce_max_age_ms)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_drop_datagrams, udp)
        await nursery.start(partial(trio.serve_listeners,
                                    partial(serve_connection, app=app), listeners,
                                    handler_nursery=nursery))
        task_status.started(BoundGrape(api_port=api_port, dht_port=dht_port, host=host))
