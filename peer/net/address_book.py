"""Which Grape addresses the mesh keeps, and the picture of its peers that `status` shows.

Grape answers a lookup with whatever was announced under the service name, dead or
alive, and anyone may announce: without bounds one hostile announcer (or a grape that
answers thousands of addresses) grows the mesh's address set, and the probes it
starts, without limit. These pure functions, used by ``peer.net.mesh``, keep the set
bounded:

- at most ``max_new_per_lookup`` new addresses from one lookup (a real grape answers
  at most 100; a random sample, so the same junk does not always win);
- at most ``max_known`` addresses in all; when full, addresses that never answered
  and have been down for at least ``evict_after`` make room (the longest-down
  first), and peers that answered are never evicted for a newcomer. The age keeps
  a grape that answers new junk on every lookup from making the node probe
  ``max_new_per_lookup`` fresh addresses per lookup forever: the churn is at most
  ``max_known`` probes per ``evict_after``;
- an address down for ``forget_after`` seconds without a break is forgotten, and
  not taken back from Grape for as long again (a real grape keeps listing dead
  addresses until their records expire, which by default is never).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = ["AddressLimits", "PeerView", "admit", "describe_failure", "forget_dead",
           "peer_views"]

UP: Final = "up"
DOWN: Final = "down"
SELF: Final = "self"


@dataclass(frozen=True)
class AddressLimits:
    """Bounds on the mesh's address set (README, Limits)."""

    max_known: int = 1000
    max_new_per_lookup: int = 100
    forget_after: float = 600.0
    evict_after: float = 60.0
    #: Probes a second of addresses that never answered, in all (peer.net.mesh).
    probe_rate: float = 20.0
    probe_burst: int = 50


class LinkState(Protocol):
    """What these functions read of a ``peer.net.mesh.PeerLink``."""

    @property
    def address(self) -> str: ...

    @property
    def node_id(self) -> bytes: ...

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def retry_at(self) -> float: ...

    @property
    def down_since(self) -> float: ...

    @property
    def since(self) -> float: ...

    @property
    def reason(self) -> str: ...


def forget_dead(links: Mapping[str, LinkState], now: float, forget_after: float
                ) -> list[str]:
    """The addresses to forget: down for ``forget_after`` seconds, no probe in flight.

    A link whose re-probe is running has ``retry_at`` set to infinity; it is left
    alone so that a probe never finishes on a link the mesh no longer holds.
    """
    return [address for address, link in links.items()
            if link.state == DOWN and link.retry_at != float("inf")
            and now - link.down_since >= forget_after]


def admit(links: Mapping[str, LinkState], offered: Iterable[str], own_address: str,
          forgotten: Mapping[str, float], now: float, limits: AddressLimits,
          rng: random.Random | None = None) -> tuple[list[str], list[str]]:
    """Choose which of ``offered`` to take in, and which known addresses to evict for them.

    Returns ``(new, evicted)``. ``forgotten`` maps an address to the time until which
    it stays forgotten.
    """
    candidates: list[str] = []
    seen: set[str] = set()
    for address in offered:
        if (address == own_address or address in links or address in seen
                or forgotten.get(address, 0.0) > now):
            continue
        seen.add(address)
        candidates.append(address)
    if len(candidates) > limits.max_new_per_lookup:
        candidates = (rng or random).sample(candidates, limits.max_new_per_lookup)
    room = limits.max_known - len(links)
    evicted: list[str] = []
    if len(candidates) > room:
        # Only addresses that never answered make room; the longest-down go first.
        never_answered = sorted(
            (link.down_since, address) for address, link in links.items()
            if link.state == DOWN and not link.node_id and link.retry_at != float("inf")
            and now - link.down_since >= limits.evict_after)
        evicted = [address for _, address in never_answered[:len(candidates) - room]]
        room += len(evicted)
    return candidates[:max(room, 0)], evicted


@dataclass(frozen=True)
class PeerView:
    """One peer as `status` shows it: a node, not an address."""

    node_id: bytes
    name: str
    state: str  # "up" or "down"
    since: float  # wall-clock seconds of the last change of state
    address: str  # where it is up, else where it was last seen
    detail: str


def peer_views(links: Iterable[LinkState], now: float) -> tuple[list[PeerView], int]:
    """The live picture: one view per node id that ever answered, and how many
    addresses from Grape never did.

    A node reachable under several addresses is shown once, under the address it is
    up on (or else the one it changed state on last).
    """
    best: dict[bytes, LinkState] = {}
    unanswered = 0
    for link in links:
        if link.state == SELF:
            continue
        if not link.node_id:
            unanswered += 1
            continue
        current = best.get(link.node_id)
        if current is None or _rank(link) > _rank(current):
            best[link.node_id] = link
    views = []
    for node_id, link in best.items():
        up = link.state == UP
        detail = "" if up else f"{link.reason}, retry in {max(0.0, link.retry_at - now):.0f}s"
        if not up and link.retry_at == float("inf"):
            detail = f"{link.reason}, probing"
        views.append(PeerView(node_id, link.name, UP if up else DOWN, link.since,
                              link.address, detail))
    views.sort(key=lambda v: (v.state != UP, v.name, v.node_id))
    return views, unanswered


def _rank(link: LinkState) -> tuple[bool, float]:
    return link.state == UP, link.since


def describe_failure(exc: BaseException | str) -> str:
    """A short, stable reason for a failed call: what a user can act on, not errno text."""
    if isinstance(exc, str):
        return exc
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "TooSlowError":
        return "no answer"
    if isinstance(exc, ConnectionError) or type(exc).__name__ == "StreamTerminatedError":
        return "connection lost"
    if isinstance(exc, OSError):
        return "unreachable"
    status = getattr(exc, "status", None)
    name = getattr(status, "name", None)
    return f"error {name}" if isinstance(name, str) else "failed"
