from __future__ import annotations

import random
from pathlib import Path

import pytest

from peer.cli.commands import build_parser
from peer.config import DEFAULT_TLS, TLS_ENV, NodeConfig, with_env_overrides
from peer.net.backoff import Backoff


def test_backoff_grows_jittered_and_capped() -> None:
    b = Backoff(base=0.5, cap=8.0, rng=random.Random(0))
    delays = [b.next_delay() for _ in range(10)]
    for n, d in enumerate(delays):
        nominal = min(8.0, 0.5 * 2**n)
        assert nominal * 0.8 <= d <= nominal * 1.2
    b.reset()
    assert 0.4 <= b.next_delay() <= 0.6


def test_env_overrides_shorten_intervals() -> None:
    base = NodeConfig(name="n", data_dir=Path("/tmp/x"))
    cfg = with_env_overrides(base, {"AUCTION_PEER_LOOKUP_INTERVAL": "0.25"})
    assert cfg.lookup_interval == 0.25
    assert cfg.announce_interval == base.announce_interval
    assert with_env_overrides(base, {}) is base


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "nan", "1e9"])
def test_env_overrides_reject_bad_values(raw: str) -> None:
    base = NodeConfig(name="n", data_dir=Path("/tmp/x"))
    with pytest.raises(ValueError, match="AUCTION_PEER_ANTI_ENTROPY_INTERVAL"):
        with_env_overrides(base, {"AUCTION_PEER_ANTI_ENTROPY_INTERVAL": raw})


def test_env_overrides_set_the_address_limits() -> None:
    base = NodeConfig(name="n", data_dir=Path("/tmp/x"))
    cfg = with_env_overrides(base, {"AUCTION_PEER_MAX_ADDRESSES": "50",
                                    "AUCTION_PEER_MAX_NEW_ADDRESSES_PER_LOOKUP": "5",
                                    "AUCTION_PEER_FORGET_AFTER": "90.5"})
    assert (cfg.max_addresses, cfg.max_new_addresses_per_lookup, cfg.forget_after) \
        == (50, 5, 90.5)


def test_env_overrides_set_the_transport_limits() -> None:
    base = NodeConfig(name="n", data_dir=Path("/tmp/x"))
    cfg = with_env_overrides(base, {"AUCTION_PEER_MAX_CONNECTIONS_PER_ADDRESS": "8",
                                    "AUCTION_PEER_IDLE_TIMEOUT": "30"})
    assert cfg.transport_limits.max_connections_per_address == 8
    assert cfg.transport_limits.idle_timeout == 30.0
    assert cfg.transport_limits.max_connections == base.transport_limits.max_connections


def test_env_overrides_set_the_rate_limits() -> None:
    base = NodeConfig(name="n", data_dir=Path("/tmp/x"))
    cfg = with_env_overrides(base, {"AUCTION_PEER_BID_RATE": "50",
                                    "AUCTION_PEER_PUSH_EVENT_RATE": "100"})
    assert (cfg.rate_limits.bid_rate, cfg.rate_limits.push_event_rate) == (50.0, 100.0)
    assert cfg.rate_limits.sync_rate == base.rate_limits.sync_rate


@pytest.mark.parametrize("raw", ["0", "1.5", "lots", "-3"])
def test_env_overrides_reject_bad_limits(raw: str) -> None:
    base = NodeConfig(name="n", data_dir=Path("/tmp/x"))
    with pytest.raises(ValueError, match="AUCTION_PEER_MAX_ADDRESSES"):
        with_env_overrides(base, {"AUCTION_PEER_MAX_ADDRESSES": raw})


@pytest.mark.parametrize(("flag", "env", "expected"), [
    (None, None, DEFAULT_TLS),
    (None, "0", False), (None, "off", False), (None, "1", True), (None, " Yes ", True),
    (True, "0", True),  # --tls wins over the variable
    (False, "1", False),  # --no-tls too
])
def test_tls_is_the_flag_else_the_variable_else_the_default(
        flag: bool | None, env: str | None, expected: bool) -> None:
    base = NodeConfig(name="A", data_dir=Path("/tmp/x"), tls=flag)
    cfg = with_env_overrides(base, {} if env is None else {TLS_ENV: env})
    assert cfg.use_tls is expected


def test_a_tls_setting_that_is_no_yes_or_no_is_an_error() -> None:
    with pytest.raises(ValueError, match=TLS_ENV):
        with_env_overrides(NodeConfig(name="A", data_dir=Path("/tmp/x")), {TLS_ENV: "maybe"})


@pytest.mark.parametrize(("argv", "expected"), [([], None), (["--tls"], True),
                                                (["--no-tls"], False)])
def test_serve_takes_tls_and_no_tls(argv: list[str], expected: bool | None) -> None:
    args = build_parser().parse_args(["serve", "--name", "A", *argv])
    assert args.tls is expected
