"""Can peers reach this node at the address Grape gives them? Ask it, as they would.

Grape records an announce under the address its DHT traffic came from, not the one
the node listens on (``shared/grape-http-api.md`` section 4). A node that listens on
127.0.0.1 while Grape lists 10.0.0.5 is unreachable for every other host, and
nothing else would say so. The self-check looks the service up, takes every listed
address with this node's port, and says ``Hello`` through each: when one answers
with this node's own id, that is the address peers dial. Otherwise the result says
why and what to change.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

__all__ = ["FAILED", "MAX_CANDIDATES", "PASSED", "PENDING", "SelfCheck", "check_self",
           "is_local_address"]

log = logging.getLogger(__name__)

PASSED, FAILED, PENDING = "passed", "failed", "pending"
# Addresses asked per check. A host has few addresses; a grape that lists more with
# our port (old records of other hosts, or a hostile grape) gets the first ones only.
MAX_CANDIDATES = 16


@dataclass(frozen=True)
class SelfCheck:
    """The outcome of one self-check.

    Attributes:
        state: ``passed``, ``failed``, or ``pending`` (not run yet).
        address: the address that answered as this node (what peers dial); on
            failure the address Grape lists for this port, if any; else "".
        detail: on failure, what is wrong and the fix; on success, empty.
    """

    state: str
    address: str = ""
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.state == PASSED


NOT_RUN = SelfCheck(PENDING, "", "not checked yet")


def is_local_address(host: str) -> bool:
    """True when ``host`` (an IP literal) is an address of this machine.

    Binding a UDP socket to it succeeds exactly when an interface here has it;
    nothing is sent.
    """
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_DGRAM,
                                   flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return False
    for family, type_, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, type_, proto) as s:
                s.bind(sockaddr)
                return True
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL:
                log.debug("cannot tell whether %s is local: %s", host, exc)
    return False


def _host_of(address: str) -> str:
    return address.rpartition(":")[0].strip("[]")


async def check_self(lookup: Callable[[], Awaitable[list[str]]],
                     who_is_at: Callable[[str], Awaitable[bytes]],
                     node_id: bytes, port: int, listen_host: str,
                     *, service: str = "auction") -> SelfCheck:
    """Look this node up and say Hello to it through every address listed with its port.

    Args:
        lookup: the addresses Grape lists for the service (raises on failure).
        who_is_at: the node id that answers Hello at an address (raises on failure).
        node_id: this node's id.
        port: the port this node announced.
        listen_host: the ``--host`` it listens on, for the advice on failure.
        service: the service name, for messages.
    """
    try:
        addresses = await lookup()
    except Exception as exc:  # any grape failure: the check could not run
        return SelfCheck(FAILED, "", f"looking up {service!r} in Grape failed ({exc}); "
                                     "check that --grape names a grape on this host "
                                     "that is running")
    suffix = f":{port}"
    candidates = sorted({a for a in addresses if a.endswith(suffix)})[:MAX_CANDIDATES]
    if not candidates:
        return SelfCheck(FAILED, "", f"Grape lists no address with port {port} under "
                                     f"{service!r}: the announce has not reached it (yet); "
                                     "check that --grape names a grape on this host that "
                                     "is running")
    answers: dict[str, bytes | BaseException] = {}

    async def ask(address: str) -> None:
        try:
            answers[address] = await who_is_at(address)
        except Exception as exc:  # refused, timed out, garbled: not us
            answers[address] = exc

    async with trio.open_nursery() as nursery:
        for address in candidates:
            nursery.start_soon(ask, address)
    ours = [a for a in candidates if answers[a] == node_id]
    if ours:
        return SelfCheck(PASSED, ours[0], "")
    return SelfCheck(FAILED, candidates[0],
                     "; ".join(_why_not(a, answers[a], port, listen_host) for a in candidates))


def _why_not(address: str, answer: bytes | BaseException, port: int, listen_host: str) -> str:
    """Why ``address`` did not answer as this node, and the fix."""
    host = _host_of(address)
    if isinstance(answer, bytes):
        return (f"{address} answers as another node ({answer.hex()[:8]}): Grape lists it "
                "for this port, but it is not this node")
    reason = str(answer) or type(answer).__name__
    if not is_local_address(host):
        return (f"peers dial {address} (the address Grape recorded), which is not an "
                f"address of this host, and it does not answer as this node ({reason}): "
                "the grape given in --grape runs on another host, or this host is behind "
                f"NAT; use a grape on this host, or forward {address} to this node")
    if listen_host not in ("0.0.0.0", "::", "") and listen_host != host:
        return (f"peers dial {address}, but this node listens on {listen_host}:{port} only "
                f"({reason}); start it with --host 0.0.0.0 (every interface) or "
                f"--host {host}")
    return (f"peers dial {address}, but this node does not answer there ({reason}); "
            f"check that nothing (a firewall) blocks TCP port {port} on {host}")
