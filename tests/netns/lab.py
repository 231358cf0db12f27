"""Hosts made of network namespaces on one bridge, for tests of deployments across machines.

Each lab gets its own namespaces (unique names per run): ``<id>sw`` holds the bridge,
``<id>h1``, ``<id>h2``, ... are the hosts, each with ``eth0`` at ``10.201.0.<i>/24``
(a veth whose other end is a port of the bridge) and ``lo``. The addresses exist only
inside these namespaces: the root namespace has no interface on the bridge and no
route to them, and nothing in the lab routes anywhere else.

Taking a host's bridge port down makes the host vanish for the others (packets to it
are dropped, as when a machine loses power), without touching its processes.

Needs root and ``ip`` (iproute2). Without them the tests skip with the reason,
unless ``REQUIRE_NETNS=1`` (CI) makes them fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

__all__ = ["Lab", "require_netns", "running_lab"]

SUBNET = "10.201.0"


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("REQUIRE_NETNS") == "1":
        pytest.fail(reason + "; REQUIRE_NETNS=1 forbids skipping")
    pytest.skip(reason)


def require_netns() -> str:
    """The ``ip`` binary; skip (or fail under REQUIRE_NETNS=1) when namespaces are out of reach."""
    ip = shutil.which("ip")
    if ip is None:
        _fail_or_skip("`ip` (iproute2) is not installed")
        raise AssertionError("unreachable")
    if os.geteuid() != 0:
        _fail_or_skip("network namespaces need root")
    return ip


@dataclass
class Lab:
    ip: str
    prefix: str  # unique per lab: every namespace name starts with it
    hosts: int

    @property
    def switch(self) -> str:
        return f"{self.prefix}sw"

    def netns(self, host: int) -> str:
        return f"{self.prefix}h{host}"

    def address(self, host: int) -> str:
        return f"{SUBNET}.{host}"

    def exec(self, host: int) -> list[str]:
        """The command prefix that runs a program on ``host``."""
        return [self.ip, "netns", "exec", self.netns(host)]

    def run(self, *args: str) -> None:
        subprocess.run([self.ip, *args], check=True, capture_output=True, timeout=20)

    def link(self, host: int, up: bool) -> None:
        """Connect ``host`` to the bridge or cut it off (its processes keep running)."""
        self.run("-n", self.switch, "link", "set", f"v{host}", "up" if up else "down")

    def build(self) -> None:
        self.run("netns", "add", self.switch)
        self.run("-n", self.switch, "link", "add", "br0", "type", "bridge")
        self.run("-n", self.switch, "link", "set", "br0", "up")
        for host in range(1, self.hosts + 1):
            ns = self.netns(host)
            self.run("netns", "add", ns)
            self.run("-n", ns, "link", "set", "lo", "up")
            self.run("-n", self.switch, "link", "add", f"v{host}", "type", "veth",
                     "peer", "name", "eth0", "netns", ns)
            self.run("-n", self.switch, "link", "set", f"v{host}", "master", "br0", "up")
            self.run("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            self.run("-n", ns, "link", "set", "eth0", "up")

    def destroy(self) -> None:
        """Delete every namespace of the lab (the veths and the bridge go with them)."""
        for ns in [self.netns(h) for h in range(1, self.hosts + 1)] + [self.switch]:
            subprocess.run([self.ip, "netns", "del", ns], capture_output=True, timeout=20)


@contextmanager
def running_lab(hosts: int) -> Iterator[Lab]:
    """``hosts`` namespaces on a bridge; all of it deleted afterwards, even on failure."""
    ip = require_netns()
    lab = Lab(ip, f"ap{uuid.uuid4().hex[:6]}", hosts)
    try:
        try:
            lab.build()
        except subprocess.CalledProcessError as exc:
            _fail_or_skip(f"cannot build network namespaces: {exc.stderr.decode().strip()}")
        yield lab
    finally:
        lab.destroy()
