"""Binding the sockets and running one grape: :func:`serve`."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import trio

from ._network import NetworkDht
from ._server import GrapeApp, Timeouts, serve_connection
from .krpc import DatagramTransport, open_udp_transport

__all__ = ["BoundGrape", "GrapeBindError", "GrapeConfig", "parse_bootstrap", "serve"]

log = logging.getLogger("localgrape")

Address = tuple[str, int]

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
"""SO_RCVBUF asked for the DHT socket (Linux caps it at net.core.rmem_max)."""


@dataclass(frozen=True)
class GrapeConfig:
    """How to run a grape; the fields mirror the grape CLI flags.

    Attributes:
        api_port: ``--aph``, the HTTP API port (0: any free port).
        dht_port: ``--dp``, the DHT UDP port (0: any free port).
        bind: ``-b``, the HTTP listen address and the host of this grape's own
            announce records; None listens on all interfaces and stores no own
            record (grape-http-api.md section 4).
        bootstrap: ``--bn`` nodes, ``"host:port"`` each (another localgrape's
            or real grape's DHT port). Empty: a lone grape until another node
            bootstraps to this one.
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
        dht_port: the bound UDP port (bootstrap another grape with
            ``f"127.0.0.1:{dht_port}"``).
        host: the HTTP listen address (``0.0.0.0`` when not bound to one).
        dht: the running DHT node (its ``node.statistics()`` counts packets).
    """

    api_port: int
    dht_port: int
    host: str
    dht: NetworkDht | None = field(default=None, compare=False, repr=False)

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


async def _bind_udp(port: int) -> DatagramTransport:
    # The DHT socket always binds to all interfaces (section 1), like k-rpc's udp4.
    try:
        return await open_udp_transport("0.0.0.0", port, receive_buffer=UDP_RECEIVE_BUFFER)
    except OSError as exc:
        raise GrapeBindError(exc.errno, f"cannot bind DHT UDP port 0.0.0.0:{port} "
                                        f"(--dp): {_describe(exc)}") from exc


async def _bind_http(config: GrapeConfig) -> list[trio.SocketListener]:
    host = config.bind if config.bind is not None else "0.0.0.0"
    try:
        return await trio.open_tcp_listeners(config.api_port, host=host)
    except OSError as exc:
        raise GrapeBindError(exc.errno, f"cannot listen on HTTP {host}:{config.api_port} "
                                        f"(--aph, -b): {_describe(exc)}") from exc


def parse_bootstrap(entry: str) -> tuple[str, int]:
    """``"host:port"`` of ``--bn`` as ``(host, port)``.

    Raises:
        ValueError: not ``host:port`` with a port of 1-65535.
    """
    host, sep, port_text = entry.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) <= 0xFFFF:
        raise ValueError(f"bootstrap node {entry!r} is not host:port")
    return host, int(port_text)


async def _resolve_bootstrap(entries: Sequence[str]) -> list[Address]:
    """The IPv4 addresses of ``--bn``; unusable entries are logged and skipped."""
    out: list[Address] = []
    for entry in entries:
        try:
            host, port = parse_bootstrap(entry)
            infos = await trio.socket.getaddrinfo(host, port, socket.AF_INET,
                                                  socket.SOCK_DGRAM)
        except (ValueError, OSError) as exc:
            log.warning("localgrape: ignoring bootstrap node %r: %s", entry, exc)
            continue
        address = (str(infos[0][4][0]), port)
        if address not in out:
            out.append(address)
    return out


async def serve(config: GrapeConfig, *,
                task_status: trio.TaskStatus[BoundGrape] = trio.TASK_STATUS_IGNORED,
                timeouts: Timeouts | None = None) -> None:
    """Run a grape until cancelled: a DHT node on ``dht_port`` and the HTTP API.

    Binds the UDP and HTTP ports, then reports them with
    ``task_status.started(BoundGrape(...))``, so that
    ``bound = await nursery.start(serve, GrapeConfig())`` works with port 0. The
    DHT joins its bootstrap nodes in the background (a real grape answers HTTP
    before its DHT is ready too); a second grape started with
    ``bootstrap=(f"127.0.0.1:{bound.dht_port}",)`` joins the first, and the first
    learns of it from its queries.

    Args:
        config: ports, bind address, bootstrap nodes and options.
        task_status: trio's start protocol.
        timeouts: connection deadlines (tests shorten them).

    Raises:
        GrapeBindError: a port or address could not be bound.
    """
    bootstrap = await _resolve_bootstrap(config.bootstrap)
    udp = await _bind_udp(config.dht_port)
    try:
        listeners = await _bind_http(config)
    except BaseException:
        udp.close()
        raise
    host = config.bind if config.bind is not None else "0.0.0.0"
    dht = NetworkDht(bind=config.bind, bootstrap=bootstrap,
                     announce_max_age_ms=config.announce_max_age_ms, transport=udp)
    app = GrapeApp(dht, max_payload_size=config.max_payload_size, timeouts=timeouts)
    try:
        async with trio.open_nursery() as nursery:
            _, dht_port = await nursery.start(dht.run)
            api_port = listeners[0].socket.getsockname()[1]
            log.info("localgrape: HTTP API on %s:%d, DHT UDP on 0.0.0.0:%d (node id %s)",
                     host, api_port, dht_port, dht.node_id_hex)
            if config.announce_max_age_ms:
                log.info("localgrape: announced records expire %d ms after their last "
                         "announce", config.announce_max_age_ms)
            await nursery.start(partial(trio.serve_listeners,
                                        partial(serve_connection, app=app), listeners,
                                        handler_nursery=nursery))
            task_status.started(BoundGrape(api_port=api_port, dht_port=dht_port, host=host,
                                           dht=dht))
    finally:
        for listener in listeners:
            with trio.CancelScope(shield=True):
                await listener.aclose()
