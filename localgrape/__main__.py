"""``python -m localgrape``: the grape CLI (grenache-grape 1.0.0 flags and aliases)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio

from ._grape import GrapeBindError, GrapeConfig, serve

__all__ = ["build_parser", "config_from_args", "main"]

VERSION = "1.0.0"
EXIT_BIND_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; flag names and aliases follow ``grape --help``."""
    parser = argparse.ArgumentParser(
        prog="localgrape",
        description="A pure-Python Grenache Grape. It answers the Grape HTTP API like "
                    "grenache-grape 1.0.0 started with the same flags, and its DHT node "
                    "(KRPC over UDP on --dp) joins other localgrapes and real grapes.",
        epilog="Example, two grapes: python -m localgrape --dp 20001 --aph 30001 "
               "--bn 127.0.0.1:20002 -b 127.0.0.1 and python -m localgrape --dp 20002 "
               "--aph 40001 --bn 127.0.0.1:20001 -b 127.0.0.1",
        allow_abbrev=False)
    parser.add_argument("-b", "--b", "--bind", dest="bind", metavar="HOST",
                        help="listening host of the HTTP API, and the host of this "
                             "grape's own announce records; without it the API listens "
                             "on all interfaces and own announces are not stored")
    parser.add_argument("--dp", "--dht_port", dest="dht_port", type=int, required=True,
                        metavar="PORT", help="DHT listening port (UDP, all interfaces; "
                                             "0 picks a free port)")
    parser.add_argument("--aph", "--api_port", dest="api_port", type=int, required=True,
                        metavar="PORT", help="HTTP API port (0 picks a free port)")
    parser.add_argument("--bn", "--bootstrap", dest="bootstrap", required=True,
                        metavar="NODES", help="comma-separated DHT bootstrap nodes "
                        "host:port (other grapes' --dp); '' for a lone grape")
    parser.add_argument("--dht_peer_maxAge", "--dpa", dest="dpa", type=float, metavar="MS",
                        help="announced records expire this many ms after their last "
                             "announce (default: never, like the grape CLI)")
    parser.add_argument("--check_maxPayloadSize", dest="max_payload_size", type=int,
                        metavar="BYTES", help="bodies over this size get 413 "
                                              "ERR_GRAPE_PAYLOAD_SIZE (default: no limit)")
    ignored = "accepted for compatibility; no effect"
    parser.add_argument("--dc", "--dht_concurrency", type=float, metavar="N",
                        help=f"DHT concurrency ({ignored})")
    parser.add_argument("--dht_maxTables", type=float, metavar="N",
                        help=f"DHT max tables ({ignored})")
    parser.add_argument("--dht_maxValues", type=float, metavar="N",
                        help=f"DHT max values ({ignored})")
    parser.add_argument("--cache_maxAge", type=float, metavar="MS",
                        help="maximum cache age (unused, as in the grape CLI)")
    parser.add_argument("--dnl", "--dht_nodeLiveness", type=float, metavar="MS",
                        help=f"interval in ms to check for dead nodes ({ignored})")
    parser.add_argument("--version", action="version", version=VERSION)
    return parser


def config_from_args(args: argparse.Namespace) -> GrapeConfig:
    """The :class:`GrapeConfig` for parsed CLI arguments."""
    # Like the grape CLI: empty entries of --bn are dropped (bin/grape.js).
    bootstrap = tuple(part for part in args.bootstrap.split(",") if part)
    dpa = int(args.dpa) if args.dpa else None
    return GrapeConfig(api_port=args.api_port, dht_port=args.dht_port, bind=args.bind,
                       bootstrap=bootstrap, announce_max_age_ms=dpa,
                       max_payload_size=args.max_payload_size)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a grape until interrupted; the exit code (1 when a port cannot be bound)."""
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        trio.run(serve, config)
    except GrapeBindError as exc:
        print(f"localgrape: {exc.strerror}", file=sys.stderr)
        return EXIT_BIND_ERROR
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
