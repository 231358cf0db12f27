"""`python -m peer`: run a node, or drive a running one through its control socket.

Exit codes (every command):
    0  done
    1  refused by the auction rules, or STORAGE_UNAVAILABLE when a node cannot write
       its event log (the code and reason go to stderr)
    2  bad usage or bad input, e.g. a price of ``abc``
    3  the node is not running or cannot be reached, its control socket is not
       ours, or it went away mid-call (then the outcome is unknown, and the message
       says how to check it)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from peer import paths
from peer.config import DEFAULT_GRAPE, DEFAULT_HOST, DEFAULT_SERVICE, NodeConfig
from peer.control_client import CALL_TIMEOUT, NodeError, NodeLost, NodeUnreachable, call, stream
from peer.control_socket import ControlSocketError
from peer.gen.auction.v1 import (
    BidRequest,
    CloseRequest,
    ControlReply,
    ControlStub,
    ListRequest,
    Notification,
    OpenRequest,
    RejectCode,
    ShowRequest,
    StatusRequest,
    WatchRequest,
)
from peer.lost_call import describe
from peer.names import NameCollision, resolve_data_dir
from peer.render import (
    auction_json,
    auction_lines,
    list_lines,
    notification_json,
    status_json,
    status_lines,
)
from peer.rules import Rejection, check_name, parse_amount

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

# Refusals that mean "what you typed is wrong" rather than "the auction says no".
_INPUT_CODES = frozenset({RejectCode.BAD_AMOUNT, RejectCode.BAD_ITEM, RejectCode.BAD_CURRENCY,
                          RejectCode.AMBIGUOUS_AUCTION})


class UsageError(Exception):
    """Bad input caught before the node is asked (exit 2)."""


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on usage errors already; keep its message, drop nothing.
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _version() -> str:
    try:
        return metadata.version("auction-peer")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _add_target(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--data-dir", type=Path, metavar="DIR",
                       help="the data dir of the node to talk to")
    group.add_argument("--name", metavar="NAME",
                       help="the node's name; its data dir is $AUCTION_PEER_HOME/NAME, NAME "
                            "escaped as %%XX except letters, digits and . _ - "
                            "(default home ~/.auction-peer)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m peer",
        description="A peer-to-peer auction node. `serve` runs one; the other commands "
                    "talk to a running node through the control socket in its data dir.",
        epilog="Exit codes: 0 done, 1 refused (by the auction rules, or STORAGE_UNAVAILABLE: a "
               "node cannot write its log), 2 bad usage or input, "
               "3 node not running or unreachable.",
    )
    parser.add_argument("--version", action="version", version=f"auction-peer {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    serve = sub.add_parser("serve", help="run a node until SIGINT/SIGTERM",
                           description="Run a node: announce it in Grape, find the other "
                                       "nodes, sync from them, then serve until stopped.")
    serve.add_argument("--name", required=True,
                       help="display name shown to everyone, e.g. Client#1")
    serve.add_argument("--grape", action="append", metavar="URL",
                       help=f"Grape HTTP API URL; repeat for failover (default {DEFAULT_GRAPE})")
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help=f"address the public Peer service listens on (default "
                            f"{DEFAULT_HOST}: every interface). Peers dial the address Grape "
                            "recorded for this host; the self-check at start says whether "
                            "this node answers there")
    serve.add_argument("--port", type=int, default=0,
                       help="public port; 0 (the default) picks a free one on the first "
                            "start and reuses it later (remembered in the data dir)")
    serve.add_argument("--data-dir", type=Path, metavar="DIR",
                       help="key, event database and control socket (default "
                            "$AUCTION_PEER_HOME/NAME with NAME escaped, home ~/.auction-peer)")
    serve.add_argument("--service", default=DEFAULT_SERVICE,
                       help=f"Grape service name nodes announce under (default {DEFAULT_SERVICE})")
    serve.add_argument("--json", action="store_true",
                       help="one JSON object per line on stdout (first: ready)")

    p = sub.add_parser("open", help="open an auction")
    p.add_argument("item", help="what is sold, e.g. Pic#1")
    p.add_argument("price", help="start price, a decimal such as 75 or 75.5")
    p.add_argument("--currency", default="USDt", help="currency (default USDt)")
    _add_target(p)

    p = sub.add_parser("bid", help="bid on someone else's auction")
    p.add_argument("auction", help="full id, unique id prefix, or SELLER->ITEM")
    p.add_argument("price", help="amount, a decimal in the auction's currency")
    _add_target(p)

    p = sub.add_parser("close", help="close your own auction; every node learns the winner")
    p.add_argument("auction", help="full id, unique id prefix, or SELLER->ITEM")
    _add_target(p)

    p = sub.add_parser("list", help="list open auctions")
    p.add_argument("--all", action="store_true", help="include closed auctions")
    _add_target(p)

    p = sub.add_parser("show", help="one auction: state, start price, bids, winner")
    p.add_argument("auction", help="full id, unique id prefix, or SELLER->ITEM")
    _add_target(p)

    p = sub.add_parser("watch", help="print notifications as they happen (Ctrl-C stops)")
    _add_target(p)

    p = sub.add_parser("status", help="the node's peers and their health, heads, forks")
    _add_target(p)

    demo = sub.add_parser("demo", help="play the reference scenario with three nodes",
                          description="Start an embedded localgrape (unless --grape is "
                                      "given) and three nodes, play the reference scenario "
                                      "and exit 0 only if every node saw the winner.")
    demo.add_argument("--grape", metavar="URL", help="use this grape instead of an embedded one")
    return parser


def _socket(args: argparse.Namespace) -> Path:
    if args.data_dir is not None:
        data_dir: Path = args.data_dir
    elif args.name is not None:
        data_dir = _data_dir_of(args.name)
    else:
        raise UsageError("say which node: --name NAME or --data-dir DIR")
    return paths.control_socket_path(data_dir)


def _data_dir_of(name: str) -> Path:
    try:
        return resolve_data_dir(name)
    except NameCollision as exc:
        raise UsageError(str(exc)) from None


def _check_price(text: str) -> str:
    parsed = parse_amount(text)
    if isinstance(parsed, Rejection):
        raise UsageError(f"bad price {text!r}: {parsed.reason}")
    return text


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=None))


def _auction_command(args: argparse.Namespace,
                     fn: Callable[[ControlStub], Any]) -> int:
    reply: ControlReply = call(_socket(args), fn)
    if reply.rejected is not None:
        rejection = Rejection(reply.rejected.code, reply.rejected.reason)
        if args.json:
            _print_json({"error": rejection.code_name, "reason": rejection.reason})
        print(f"refused: {rejection}", file=sys.stderr)
        return EXIT_USAGE if reply.rejected.code in _INPUT_CODES else EXIT_REFUSED
    assert reply.auction is not None
    if args.json:
        _print_json(auction_json(reply.auction, with_bids=True))
    else:
        print("\n".join(auction_lines(reply.auction)))
    return EXIT_OK


def _run_control(args: argparse.Namespace) -> int:
    cmd = args.command
    timeout = CALL_TIMEOUT
    if cmd == "open":
        request = OpenRequest(item=args.item, start_amount=_check_price(args.price),
                              currency=args.currency)
        return _auction_command(args, lambda s: s.open(request, timeout=timeout))
    if cmd == "bid":
        bid = BidRequest(auction=args.auction, amount=_check_price(args.price))
        return _auction_command(args, lambda s: s.bid(bid, timeout=timeout))
    if cmd == "close":
        close = CloseRequest(auction=args.auction)
        return _auction_command(args, lambda s: s.close(close, timeout=timeout))
    if cmd == "show":
        show = ShowRequest(auction=args.auction)
        return _auction_command(args, lambda s: s.show(show, timeout=timeout))
    if cmd == "list":
        listed = call(_socket(args), lambda s: s.list(ListRequest(all=args.all), timeout=timeout))
        if args.json:
            _print_json([auction_json(v, with_bids=True) for v in listed.auctions])
        else:
            print("\n".join(list_lines(list(listed.auctions))))
        return EXIT_OK
    if cmd == "status":
        status = call(_socket(args), lambda s: s.status(StatusRequest(), timeout=timeout))
        if args.json:
            _print_json(status_json(status))
        else:
            print("\n".join(status_lines(status)))
        return EXIT_OK
    if cmd == "watch":
        def show_note(note: Notification) -> None:
            print(json.dumps(notification_json(note), ensure_ascii=False) if args.json
                  else note.text, flush=True)

        try:
            stream(_socket(args), lambda s: s.watch(WatchRequest()), show_note)
        except KeyboardInterrupt:
            return EXIT_OK
        print("the node stopped", file=sys.stderr)
        return EXIT_OK
    raise AssertionError(f"unknown command {cmd}")


def _serve(args: argparse.Namespace) -> int:
    from peer.node import serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, not {args.port}")
    name = args.name.strip()
    bad_name = check_name(name)
    if bad_name is not None:
        raise UsageError(f"bad --name {args.name!r}: {bad_name}")
    config = NodeConfig(
        name=name,
        data_dir=args.data_dir if args.data_dir is not None else _data_dir_of(name),
        grape_urls=tuple(args.grape) if args.grape else (DEFAULT_GRAPE,),
        host=args.host, port=args.port, service=args.service, json_output=args.json,
    )
    return serve(config)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "demo":
            from peer.demo import main as demo_main

            return demo_main(args.grape)
        return _run_control(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ControlSocketError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except NodeUnreachable as exc:
        print(f"error: no node is answering ({exc}). Is `python -m peer serve` running "
              "with that --name/--data-dir?", file=sys.stderr)
        return EXIT_UNREACHABLE
    except NodeLost as exc:
        lost = describe(args.command, str(exc), auction=getattr(args, "auction", None),
                        name=getattr(args, "name", None), data_dir=getattr(args, "data_dir", None))
        if getattr(args, "json", False):
            _print_json(lost.json)
        print(lost.text, file=sys.stderr)
        return EXIT_UNREACHABLE
    except NodeError as exc:
        print(f"error: the node failed to answer: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
