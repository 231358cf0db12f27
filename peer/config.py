"""A node's configuration, as `python -m peer serve` builds it from its flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from peer.net.h2_guard import TransportLimits
from peer.net.rate_limit import RateLimits

DEFAULT_GRAPE = "http://127.0.0.1:30001"
DEFAULT_SERVICE = "auction"
# Every interface: Grape lists a node under the address its host's DHT traffic comes
# from, which is not loopback as soon as there is more than one host. The public
# port serves only the Peer API; the Control API is on a Unix socket (0600).
DEFAULT_HOST = "0.0.0.0"


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to run.

    Attributes:
        name: display name shown to other users, e.g. ``Client#1``.
        data_dir: holds the key, the event database and (usually) the control socket.
        grape_urls: Grape HTTP endpoints, tried in order; the first that answers is kept.
        host: address the public Peer service binds to (Grape decides the address
            peers dial; the self-check finds it).
        port: public port; 0 picks a free one, remembered in the data dir for restarts.
        service: the Grape service name under which nodes announce themselves.
        json_output: print one JSON object per line instead of readable log lines.
        tls: TLS on the public port (``peer.net.tls``); None: ``AUCTION_PEER_TLS`` if set
            (applied by ``with_env_overrides``), else ``DEFAULT_TLS``.
    """

    name: str
    data_dir: Path
    grape_urls: tuple[str, ...] = (DEFAULT_GRAPE,)
    host: str = DEFAULT_HOST
    port: int = 0
    service: str = DEFAULT_SERVICE
    json_output: bool = False
    tls: bool | None = None
    # Intervals in seconds; tests shorten them.
    announce_interval: float = 5.0
    lookup_interval: float = 2.0
    anti_entropy_interval: float = 3.0
    # An up peer silent this long is probed with Hello (peer/net/mesh.py, LIVENESS_IDLE).
    liveness_interval: float = 10.0
    # Bounds on the address set from Grape (peer/net/address_book.py; README, Limits).
    max_addresses: int = 1000
    max_new_addresses_per_lookup: int = 100
    forget_after: float = 600.0
    # Bounds on the public gRPC port (peer/net/h2_guard.py; README, Limits).
    transport_limits: TransportLimits = field(default_factory=TransportLimits)
    progress_interval: float = 1.0  # initial sync progress; a shorter sync shows none
    # Per-connection rates of the costly Peer rpcs (peer/net/rate_limit.py; README, Limits).
    rate_limits: RateLimits = field(default_factory=RateLimits)

    @property
    def use_tls(self) -> bool:
        return DEFAULT_TLS if self.tls is None else self.tls


#: TLS on the public port unless --no-tls or AUCTION_PEER_TLS=0 (README, Configuration).
DEFAULT_TLS = True
TLS_ENV = "AUCTION_PEER_TLS"
_TLS_WORDS = {"1": True, "true": True, "yes": True, "on": True,
              "0": False, "false": False, "no": False, "off": False}

_INTERVAL_ENV = {
    "announce_interval": "AUCTION_PEER_ANNOUNCE_INTERVAL",
    "lookup_interval": "AUCTION_PEER_LOOKUP_INTERVAL",
    "anti_entropy_interval": "AUCTION_PEER_ANTI_ENTROPY_INTERVAL",
    "liveness_interval": "AUCTION_PEER_LIVENESS_INTERVAL",
    "progress_interval": "AUCTION_PEER_PROGRESS_INTERVAL",
}


# Limits: (environment variable, smallest allowed value, largest allowed value).
_LIMIT_ENV: dict[str, tuple[str, float, float]] = {
    "max_addresses": ("AUCTION_PEER_MAX_ADDRESSES", 1, 1_000_000),
    "max_new_addresses_per_lookup": ("AUCTION_PEER_MAX_NEW_ADDRESSES_PER_LOOKUP", 1, 1_000_000),
    "forget_after": ("AUCTION_PEER_FORGET_AFTER", 1, 30 * 86400),
}

_TRANSPORT_ENV: dict[str, tuple[str, float, float]] = {
    "max_connections_per_address": ("AUCTION_PEER_MAX_CONNECTIONS_PER_ADDRESS", 1, 100_000),
    "max_connections": ("AUCTION_PEER_MAX_CONNECTIONS", 1, 100_000),
    "max_concurrent_streams": ("AUCTION_PEER_MAX_CONCURRENT_STREAMS", 1, 10_000),
    "idle_timeout": ("AUCTION_PEER_IDLE_TIMEOUT", 1, 86400),
}

_RATE_ENV: dict[str, tuple[str, float, float]] = {
    "bid_rate": ("AUCTION_PEER_BID_RATE", 0.1, 1_000_000),
    "bid_burst": ("AUCTION_PEER_BID_BURST", 1, 1_000_000),
    "sync_rate": ("AUCTION_PEER_SYNC_RATE", 0.1, 1_000_000),
    "sync_burst": ("AUCTION_PEER_SYNC_BURST", 1, 1_000_000),
    "push_event_rate": ("AUCTION_PEER_PUSH_EVENT_RATE", 1, 10_000_000),
    # At least one full push (MAX_EVENTS_PER_PUSH) must fit.
    "push_event_burst": ("AUCTION_PEER_PUSH_EVENT_BURST", 4096, 10_000_000),
}


def with_env_overrides(config: NodeConfig, environ: Mapping[str, str]) -> NodeConfig:
    """Apply interval overrides from the environment (seconds, > 0).

    Tests and the demo shorten the periodic work this way; a bad value is an
    error rather than a silently ignored setting.
    """
    for attr, var in _INTERVAL_ENV.items():
        raw = environ.get(var)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{var} must be a number of seconds, not {raw!r}") from None
        if not 0 < value < 3600:
            raise ValueError(f"{var} must be between 0 and 3600 seconds, not {raw!r}")
        config = replace(config, **{attr: value})  # type: ignore[arg-type]
    raw_tls = environ.get(TLS_ENV)
    if raw_tls is not None and config.tls is None:  # --tls / --no-tls win
        tls = _TLS_WORDS.get(raw_tls.strip().lower())
        if tls is None:
            raise ValueError(f"{TLS_ENV} must be 1 or 0 (true/false, yes/no, on/off), "
                             f"not {raw_tls!r}")
        config = replace(config, tls=tls)
    return _with_limit_overrides(config, environ)


def _with_limit_overrides(config: NodeConfig, environ: Mapping[str, str]) -> NodeConfig:
    config = _override(config, _LIMIT_ENV, environ)
    transport = _override(config.transport_limits, _TRANSPORT_ENV, environ)
    if transport is not config.transport_limits:
        config = replace(config, transport_limits=transport)
    rates = _override(config.rate_limits, _RATE_ENV, environ)
    return config if rates is config.rate_limits else replace(config, rate_limits=rates)


_T = TypeVar("_T", NodeConfig, TransportLimits, RateLimits)


def _override(target: _T, table: dict[str, tuple[str, float, float]],
              environ: Mapping[str, str]) -> _T:
    for attr, (var, low, high) in table.items():
        raw = environ.get(var)
        if raw is None:
            continue
        integral = isinstance(getattr(target, attr), int)
        try:
            value: float = int(raw) if integral else float(raw)
        except ValueError:
            kind = "a whole number" if integral else "a number"
            raise ValueError(f"{var} must be {kind}, not {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"{var} must be between {low:g} and {high:g}, not {raw!r}")
        target = replace(target, **{attr: value})  # type: ignore[arg-type]
    return target
