"""`python -m peer`: run a node, or drive a running one through its control socket.

Exit codes (:mod:`peer.exit_codes`):
    0    done
    1    the node refused (a rule of the auction, an input it cannot use, or
         STORAGE_UNAVAILABLE when it cannot write its event log; the code and reason
         go to stderr)
    2    bad usage or bad input, caught before any node is asked (a price of ``abc``)
    3    the node is not running or cannot be reached, its control socket is not
         ours, or it went away mid-call (then the outcome is unknown, and the message
         says how to check it)
    4    `serve`: the data dir cannot be used
    5    `serve`: cannot listen (port in use, --host not an address of this machine)
    130  interrupted (Ctrl-C)

With ``--json`` every exit path prints one JSON object on stdout: the result, or
``{"error": CODE, "reason": TEXT}`` (`serve` adds ``"event": "error"``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from peer import exit_codes
from peer.cli.control_client import CALL_TIMEOUT, NodeError, NodeLost, NodeUnreachable, call, stream
from peer.cli.lost_call import describe
from peer.cli.render import (
    auction_json,
    auction_lines,
    bid_json,
    bid_lines,
    list_lines,
    notification_json,
    short_auction_ids,
    status_json,
    status_lines,
)
from peer.config import (
    DEFAULT_GRAPE,
    DEFAULT_HOST,
    DEFAULT_SERVICE,
    DEFAULT_TLS,
    TLS_ENV,
    NodeConfig,
)
from peer.core.rules import Rejection, check_name, parse_amount, parse_duration
from peer.gen.auction.v1 import (
    AuctionState,
    BidRequest,
    CloseRequest,
    ControlReply,
    ControlStub,
    ListRequest,
    Notification,
    OpenRequest,
    ShowRequest,
    StatusRequest,
    WatchRequest,
)
from peer.net.control_socket import ControlSocketError
from peer.net.views import DEFAULT_BID_PAGE, MAX_BID_PAGE
from peer.storage import paths
from peer.storage.names import NameCollision, resolve_data_dir

EXIT_OK = exit_codes.OK
EXIT_REFUSED = exit_codes.REFUSED
EXIT_USAGE = exit_codes.USAGE
EXIT_UNREACHABLE = exit_codes.UNREACHABLE

_EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 refused by the node (an auction rule, an input it cannot "
    "use, or STORAGE_UNAVAILABLE: it cannot write its log); 2 bad usage or input; 3 node "
    "not running or unreachable; serve only: 4 the data dir cannot be used, 5 cannot "
    "listen (port in use, bad --host); 130 interrupted. With --json, every exit path "
    "prints one JSON object."
)


class UsageError(Exception):
    """Bad input caught before the node is asked (exit 2)."""


class _ParseError(Exception):
    """argparse rejected the command line; ``usage`` is the parser's usage line."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    # Raised, not printed: main() decides between text and one JSON object (--json).
    def error(self, message: str) -> NoReturn:
        raise _ParseError(f"{self.prog}: error: {message}", self.format_usage())


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


_AUCTION_HELP = ("full id, a short id from `list` (ab12cd34:1), a unique id prefix, or "
                 "'SELLER->ITEM' (quote it: the shell reads > as a redirect)")


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true",
                       help="log more: what the node does in detail (DEBUG)")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="log only warnings and errors")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m peer",
        description="A peer-to-peer auction node. `serve` runs one; the other commands "
                    "talk to a running node through the control socket in its data dir.",
        epilog=_EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"auction-peer {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    serve = sub.add_parser(
        "serve", help="run a node until SIGINT/SIGTERM",
        description="Run a node: announce it in Grape, find the other nodes, sync from "
                    "them, then serve until stopped. Notifications go to stdout, logs to "
                    "stderr.",
        epilog="Exit codes: 0 stopped by SIGINT/SIGTERM; 2 bad usage; 4 the data dir "
               "cannot be used (damaged or unreadable key or database, no permission, "
               "another node on it); 5 cannot listen (port in use, --host not an address "
               "of this machine). A failed start says why in one line on stderr.")
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
    serve.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                       help="TLS 1.3 on the public port, its certificate bound to the node "
                            f"key by the Hello handshake (default {'on' if DEFAULT_TLS else 'off'}"
                            f"; {TLS_ENV}=0 or 1 when neither is given). Every node of a "
                            "network must use the same setting")
    serve.add_argument("--json", action="store_true",
                       help="one JSON object per line on stdout: peer_up for the peers found "
                            "at start and progress while a long sync runs, then ready once "
                            "synced, then one per notification; error if the start fails, "
                            "stopped at the end")
    _add_verbosity(serve)

    p = sub.add_parser(
        "open", help="open an auction",
        description="Open an auction. Without --ends-in/--ends-at it runs until you `close` "
                    "it; with one, your node closes it by itself at the end (or first thing "
                    "when it comes back, if it was not running then).",
        epilog="Example: open Pic#3 50 --ends-in 30s --extend 10s --min-increment 1")
    p.add_argument("item", help="what is sold, e.g. Pic#1")
    p.add_argument("price", help="start price, a decimal such as 75 or 75.5")
    p.add_argument("--currency", default="USDt", help="currency (default USDt)")
    ends = p.add_mutually_exclusive_group()
    ends.add_argument("--ends-in", metavar="DURATION",
                      help="end this long from now, e.g. 30s, 10m, 1h30m, 2d")
    ends.add_argument("--ends-at", metavar="TIME",
                      help="end at this time, ISO 8601, e.g. 2026-12-24T18:00Z "
                           "(no offset: this machine's local time)")
    p.add_argument("--extend", metavar="DURATION",
                   help="anti-sniping: a bid accepted within this long of the end moves the "
                        "end to the bid's time plus this long (needs an end)")
    p.add_argument("--min-increment", metavar="AMOUNT",
                   help="every bid after the first must beat the best by at least this")
    reserve = p.add_mutually_exclusive_group()
    reserve.add_argument("--reserve", metavar="AMOUNT",
                         help="public reserve: if the best bid is below it, the auction ends "
                              "with no sale (bids below it are still accepted)")
    reserve.add_argument("--sealed-reserve", metavar="AMOUNT",
                         help="the same, but hidden until the close: the Open carries only a "
                              "commitment, which the Close reveals and every node checks")
    _add_target(p)

    p = sub.add_parser("bid", help="bid on someone else's auction")
    p.add_argument("auction", help=_AUCTION_HELP)
    p.add_argument("price", help="amount, a decimal in the auction's currency")
    _add_target(p)

    p = sub.add_parser("close", help="close your own auction; every node learns the winner")
    p.add_argument("auction", help=_AUCTION_HELP)
    _add_target(p)

    p = sub.add_parser("list", help="list open auctions, each with a short id to paste")
    p.add_argument("--all", action="store_true", help="include closed auctions")
    _add_target(p)

    p = sub.add_parser("show", help="one auction: state, start price, bids, winner",
                       description="One auction: its state, start price, best bid or "
                                   "winner, how many bids it has and a page of them, "
                                   f"newest first ({DEFAULT_BID_PAGE} unless --limit says).")
    p.add_argument("auction", help=_AUCTION_HELP)
    p.add_argument("--limit", type=_int_in(1, MAX_BID_PAGE), default=0, metavar="N",
                   help=f"show at most N bids (default {DEFAULT_BID_PAGE}, at most "
                        f"{MAX_BID_PAGE})")
    p.add_argument("--offset", type=_int_in(0), default=0, metavar="K",
                   help="skip the K newest bids (with --oldest-first: the K oldest)")
    p.add_argument("--oldest-first", action="store_true",
                   help="page from the first bid on, oldest first")
    _add_target(p)

    p = sub.add_parser("watch", help="print notifications as they happen (Ctrl-C stops)")
    _add_target(p)

    p = sub.add_parser("status", help="the node's peers and their health, heads, forks")
    _add_target(p)

    demo = sub.add_parser("demo", help="play the reference scenario with three nodes",
                          description="Start two embedded localgrapes (unless --grape is "
                                      "given) and three nodes, play the reference scenario "
                                      "and exit 0 only if every node saw the winner.")
    demo.add_argument("--grape", metavar="URL", help="use this grape instead of embedded ones")
    demo.add_argument("--service", metavar="NAME",
                      help="Grape service name for the demo's nodes (default: a fresh "
                           "auction-demo-<random> with --grape, so other nodes on that "
                           "grape are left alone; auction on the embedded grapes)")
    _add_verbosity(demo)
    return parser


def _int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``lo`` to ``hi`` (no ``hi``: no top)."""
    bounds = f"{lo} or more" if hi is None else f"{lo}..{hi}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {value}")
        return value

    return parse


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


def _check_auction(text: str) -> str:
    """Refuse auction arguments that cannot name an auction, saying why."""
    stripped = text.strip()
    if not stripped:
        raise UsageError("AUCTION is empty: give an id, a short id from `list`, "
                         "or 'SELLER->ITEM'")
    if stripped.endswith("-"):
        # No id or label ends in "-" (an item is never empty): this is what is left of
        # SELLER->ITEM after the shell took ">ITEM" as a redirect of stdout.
        raise UsageError(
            f"no auction id ends in '-': {text!r} looks like 'SELLER->ITEM' cut at '>', "
            "which the shell reads as a redirect (and it may have created a file named "
            "after the item). Quote the auction: 'Client#1->Pic#1', or use its short id "
            "from `list`.")
    return text


def _duration_ms(option: str, text: str) -> int:
    parsed = parse_duration(text)
    if isinstance(parsed, str):
        raise UsageError(f"bad {option}: {parsed}")
    return parsed


def _ends_at_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"bad --ends-at {text!r}: not an ISO 8601 time like "
                         "2026-12-24T18:00Z") from None
    return int(moment.timestamp() * 1000)  # naive: local time, as datetime takes it


def _open_request(args: argparse.Namespace) -> OpenRequest:
    """The Open request with its optional terms, checked for what the CLI can check."""
    request = OpenRequest(item=args.item, start_amount=_check_price(args.price),
                          currency=args.currency)
    if args.ends_in is not None:
        request.ends_in_ms = _duration_ms("--ends-in", args.ends_in)
    if args.ends_at is not None:
        request.ends_at_ms = _ends_at_ms(args.ends_at)
    if args.extend is not None:
        if args.ends_in is None and args.ends_at is None:
            raise UsageError("--extend needs an end: give --ends-in or --ends-at too")
        request.extend_ms = _duration_ms("--extend", args.extend)
    for option, value in (("--min-increment", args.min_increment), ("--reserve", args.reserve),
                          ("--sealed-reserve", args.sealed_reserve)):
        if value is not None:
            parsed = parse_amount(value)
            if isinstance(parsed, Rejection):
                raise UsageError(f"bad {option} {value!r}: {parsed.reason}")
    request.min_increment = args.min_increment or ""
    request.reserve = args.reserve or ""
    request.sealed_reserve = args.sealed_reserve or ""
    return request


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=None), flush=True)


def _auction_command(args: argparse.Namespace,
                     fn: Callable[[ControlStub], Any]) -> int:
    reply: ControlReply = call(_socket(args), fn)
    if reply.rejected is not None:
        rejection = Rejection(reply.rejected.code, reply.rejected.reason)
        if args.json:
            _print_json({"error": rejection.code_name, "reason": rejection.reason})
        print(f"refused: {rejection}", file=sys.stderr)
        # Every refusal by the node is 1, whether a rule of the auction or an input
        # only the node can judge (AMBIGUOUS_AUCTION, BAD_ITEM); 2 is for what the
        # CLI catches before asking.
        return EXIT_REFUSED
    assert reply.auction is not None
    if reply.accepted_bid is not None:  # a bid: the accepted bid and a summary
        if args.json:
            _print_json({**auction_json(reply.auction),
                         "accepted": bid_json(reply.accepted_bid)})
        else:
            print("\n".join(bid_lines(reply.accepted_bid, reply.auction)))
        return EXIT_OK
    newest_first = not getattr(args, "oldest_first", False)
    if args.json:
        _print_json(auction_json(reply.auction, with_bids=True, newest_first=newest_first))
    else:
        print("\n".join(auction_lines(reply.auction, newest_first=newest_first)))
    return EXIT_OK


def _run_control(args: argparse.Namespace) -> int:
    cmd = args.command
    timeout = CALL_TIMEOUT
    if cmd == "open":
        request = _open_request(args)
        return _auction_command(args, lambda s: s.open(request, timeout=timeout))
    if cmd == "bid":
        bid = BidRequest(auction=_check_auction(args.auction),
                         amount=_check_price(args.price))
        return _auction_command(args, lambda s: s.bid(bid, timeout=timeout))
    if cmd == "close":
        close = CloseRequest(auction=_check_auction(args.auction))
        return _auction_command(args, lambda s: s.close(close, timeout=timeout))
    if cmd == "show":
        show = ShowRequest(auction=_check_auction(args.auction), limit=args.limit,
                           offset=args.offset, oldest_first=args.oldest_first)
        return _auction_command(args, lambda s: s.show(show, timeout=timeout))
    if cmd == "list":
        # Every auction, closed ones too, so that each short id shown is unique
        # among all the auctions `show` or `bid` could match.
        listed = call(_socket(args), lambda s: s.list(ListRequest(all=True), timeout=timeout))
        everything = list(listed.auctions)
        shown = [v for v in everything if args.all or v.state != AuctionState.CLOSED]
        ids = short_auction_ids(everything)
        if args.json:
            _print_json([auction_json(v) | {"short_id": ids[v.id]} for v in shown])
        else:
            print("\n".join(list_lines(shown, ids)))
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
        if args.json:
            _print_json({"event": "stopped", "reason": "the node stopped"})
        print("the node stopped", file=sys.stderr)
        return EXIT_OK
    raise AssertionError(f"unknown command {cmd}")


def _serve(args: argparse.Namespace) -> int:
    # Imported here: the control commands start faster without the node's imports.
    from grape_client import GrapeClient
    from peer.cli.serve import serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, not {args.port}")
    name = args.name.strip()
    bad_name = check_name(name)
    if bad_name is not None:
        raise UsageError(f"bad --name {args.name!r}: {bad_name}")
    grape_urls = tuple(args.grape) if args.grape else (DEFAULT_GRAPE,)
    for url in grape_urls:
        try:
            GrapeClient.check_url(url)
        except ValueError as exc:
            raise UsageError(f"bad --grape: {exc}") from None
    if not args.host.strip():
        raise UsageError("--host is empty")
    config = NodeConfig(
        name=name,
        data_dir=args.data_dir if args.data_dir is not None else _data_dir_of(name),
        grape_urls=grape_urls,
        host=args.host, port=args.port, service=args.service, json_output=args.json,
        tls=args.tls,
    )
    return serve(config, log_level=_log_level(args))


def _log_level(args: argparse.Namespace) -> int:
    if args.verbose:
        return logging.DEBUG
    return logging.WARNING if args.quiet else logging.INFO


def _fail(json_output: bool, is_serve: bool, code: str, reason: str, text: str,
          exit_code: int) -> int:
    """Report a failure: ``text`` on stderr, and one JSON object on stdout with --json."""
    if json_output:
        record: dict[str, Any] = {"error": code, "reason": reason}
        _print_json({"event": "error", **record} if is_serve else record)
    print(text, file=sys.stderr)
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        # stdout's reader left (`... | head`): stop quietly, as a pipeline expects,
        # and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _ParseError as exc:
        # Before parsing succeeded nothing says whether --json was meant; its presence
        # on the command line is the best guess.
        return _fail("--json" in argv, bool(argv) and argv[0] == "serve", "BAD_USAGE",
                     str(exc), exc.usage + str(exc), EXIT_USAGE)
    json_output = bool(getattr(args, "json", False))
    is_serve = args.command == "serve"
    try:
        if is_serve:
            return _serve(args)
        if args.command == "demo":
            from peer.cli.demo import main as demo_main

            # The demo tells its own story: node logs only from warnings unless -v.
            level = (logging.DEBUG if args.verbose
                     else logging.ERROR if args.quiet else logging.WARNING)
            return demo_main(args.grape, service=args.service, log_level=level)
        return _run_control(args)
    except UsageError as exc:
        return _fail(json_output, is_serve, "BAD_USAGE", str(exc), f"error: {exc}",
                     EXIT_USAGE)
    except ControlSocketError as exc:
        return _fail(json_output, is_serve, "CONTROL_SOCKET", str(exc), f"error: {exc}",
                     EXIT_UNREACHABLE)
    except NodeUnreachable as exc:
        return _fail(json_output, is_serve, "NODE_UNREACHABLE", str(exc),
                     f"error: no node is answering ({exc}). Is `python -m peer serve` "
                     "running with that --name/--data-dir?", EXIT_UNREACHABLE)
    except NodeLost as exc:
        lost = describe(args.command, str(exc), auction=getattr(args, "auction", None),
                        name=getattr(args, "name", None), data_dir=getattr(args, "data_dir", None))
        if json_output:
            _print_json(lost.json)
        print(lost.text, file=sys.stderr)
        return EXIT_UNREACHABLE
    except NodeError as exc:
        return _fail(json_output, is_serve, "NODE_ERROR", str(exc),
                     f"error: the node failed to answer: {exc}", EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        return _fail(json_output, is_serve, "INTERRUPTED", "interrupted (Ctrl-C)",
                     "interrupted", exit_codes.INTERRUPTED)
