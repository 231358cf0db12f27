"""peer.cli.render: what `show`, `list`, `status` and `--json` lines say in each state."""

from __future__ import annotations

import time

from peer.cli.render import (
    auction_json,
    auction_lines,
    best_bid,
    bid_count,
    bid_lines,
    list_lines,
    notification_json,
    short_auction_ids,
    status_json,
    status_lines,
)
from peer.gen.auction.v1 import (
    AuctionState,
    AuctionView,
    BidView,
    Fork,
    Head,
    Notification,
    NotificationKind,
    PeerStatus,
    StatusReply,
)

SELLER = bytes.fromhex("ab" * 32)
OTHER_SELLER = bytes.fromhex("ab" * 5 + "cd" * 27)  # same first 10 hex digits
BIDDER = bytes.fromhex("02" * 32)


def _bid(amount: str, name: str = "Client#2") -> BidView:
    return BidView(bidder=BIDDER, bidder_name=name, amount=amount, currency="USDt",
                   time_ms=1)


def _view(*, bids: list[BidView] | None = None, closed: bool = False, seller: bytes = SELLER,
          item: str = "Pic#1", **more: object) -> AuctionView:
    # Without a reserve, as the node fills it in: met as soon as there is a bid.
    more.setdefault("reserve_met", bool(bids) or "best" in more)
    return AuctionView(id=f"{seller.hex()}:1", seller=seller, seller_name="Client#1",
                       item=item, start_amount="75", currency="USDt",
                       state=AuctionState.CLOSED if closed else AuctionState.OPEN,
                       bids=bids or [], **more)


def test_show_an_open_auction_without_bids() -> None:
    assert auction_lines(_view()) == [
        f"Client#1->Pic#1  ({SELLER.hex()}:1)",
        "  state:       open",
        "  start price: 75 USDt",
        "  bids:        none",
    ]


def test_show_every_bid_newest_first_or_oldest_first_and_the_best() -> None:
    view = _view(bids=[_bid("75"), _bid("80", "Client#3")])
    assert auction_lines(view)[3:] == [
        "  bids (2, newest first):",
        "    Client#3 80 USDt",
        "    Client#2 75 USDt",
        "  best bid:    80 USDt by Client#3",
    ]
    assert auction_lines(view, newest_first=False)[3:6] == [
        "  bids (2, oldest first):", "    Client#2 75 USDt", "    Client#3 80 USDt"]


def test_show_a_page_of_bids_says_which_of_how_many() -> None:
    best = _bid("90", "Client#3")
    view = _view(bids=[_bid("80"), _bid("85")], bid_count=10, first_bid_index=4, best=best)
    assert auction_lines(view)[3:] == [
        "  bids #5-#6 of 10, newest first (#1 is the oldest):",
        "    Client#2 85 USDt",
        "    Client#2 80 USDt",
        "  best bid:    90 USDt by Client#3",
    ]
    empty_page = _view(bid_count=3, best=best)
    assert "  bids:        3, none on this page" in auction_lines(empty_page)
    data = auction_json(view, with_bids=True)
    assert (data["bid_count"], data["bids_from"], data["best"]["amount"]) == (10, 4, "90")
    assert [b["amount"] for b in data["bids"]] == ["85", "80"]
    assert [b["amount"] for b in auction_json(view, with_bids=True,
                                              newest_first=False)["bids"]] == ["80", "85"]


def test_show_the_winner_or_that_there_was_none() -> None:
    won = _view(bids=[_bid("75"), _bid("80")], closed=True)
    assert auction_lines(won)[-1] == "  winner:      Client#2 -> 80 USDt"
    assert auction_json(won)["winner"]["amount"] == "80"
    below_reserve = _view(bids=[_bid("75")], closed=True, reserve="100", reserve_met=False)
    assert auction_lines(below_reserve)[-1] == (
        "  winner:      none, no sale (reserve not met)")
    assert auction_json(below_reserve)["winner"] is None
    unsold = _view(closed=True)
    assert auction_lines(unsold)[-1] == "  winner:      none (closed with no bids)"
    assert auction_json(unsold)["winner"] is None and auction_json(unsold)["state"] == "closed"


def test_an_older_nodes_view_has_every_bid_and_no_best() -> None:
    view = _view(bids=[_bid("75"), _bid("80")])
    best = best_bid(view)
    assert best is not None and best.amount == "80" and bid_count(view) == 2
    # A newer view that carries no bids on this page and no best has none to show.
    assert best_bid(_view(bid_count=2)) is None


def test_bid_lines_name_the_best_when_it_is_not_the_accepted_bid() -> None:
    mine, best = _bid("80"), _bid("90", "Client#3")
    assert bid_lines(mine, _view(bids=[mine], bid_count=1, best=mine)) == [
        f"accepted: Client#2 80 USDt on Client#1->Pic#1  ({SELLER.hex()}:1)",
        "  open, 1 bid(s)"]
    assert bid_lines(mine, _view(bid_count=2, best=best))[1] == (
        "  open, 2 bid(s), best now 90 USDt by Client#3")


def test_list_lines_and_short_ids_that_tell_sellers_apart() -> None:
    assert list_lines([]) == ["no auctions"]
    views = [_view(), _view(seller=OTHER_SELLER, item="Pic#2", closed=True,
                            bids=[_bid("80")])]
    ids = short_auction_ids(views)
    # The two seller ids share their first 10 hex digits: 11 tell them apart.
    assert ids == {views[0].id: SELLER.hex()[:11] + ":1",
                   views[1].id: OTHER_SELLER.hex()[:11] + ":1"}
    lines = list_lines(views)
    assert lines[0].split() == [ids[views[0].id], "Client#1->Pic#1", "open", "start", "75",
                                "USDt,", "no", "bids"]
    assert lines[1].split() == [ids[views[1].id], "Client#1->Pic#2", "closed", "winner",
                                "Client#2", "->", "80", "USDt"]
    assert short_auction_ids([_view()]) == {views[0].id: SELLER.hex()[:8] + ":1"}


def test_notification_json_for_peers_bids_and_closes() -> None:
    up = notification_json(Notification(kind=NotificationKind.PEER_UP, peer=BIDDER,
                                        peer_name="Client#2", text="peer up"))
    assert up == {"event": "peer_up", "peer": "Client#2", "peer_id": BIDDER.hex(),
                  "text": "peer up"}
    bid = notification_json(Notification(kind=NotificationKind.BID, auction=_view(),
                                         bid=_bid("80"), text="bid"))
    assert (bid["event"], bid["bidder"], bid["amount"], bid["auction"]["label"]) == (
        "bid", "Client#2", "80", "Client#1->Pic#1")
    unsold = notification_json(Notification(kind=NotificationKind.CLOSED,
                                            auction=_view(closed=True), text="closed"))
    assert (unsold["winner"], unsold["amount"], unsold["currency"]) == (None, None, None)
    won = notification_json(Notification(kind=NotificationKind.CLOSED,
                                         auction=_view(closed=True), bid=_bid("80"),
                                         text="closed"))
    assert (won["winner"], won["winner_id"], won["amount"]) == ("Client#2", BIDDER.hex(), "80")


def test_status_lines_and_json_in_each_state() -> None:
    now_ms = int(time.time() * 1000)
    status = StatusReply(
        node_id=SELLER, name="Client#1", address="0.0.0.0:5001", events=7,
        dial_address="127.0.0.1:5001", self_check="passed",
        heads=[Head(author=SELLER, seq=7)],
        peers=[PeerStatus(node_id=BIDDER, name="Client#2", address="127.0.0.1:5002",
                          up=True, state="up", since_ms=now_ms),
               PeerStatus(node_id=OTHER_SELLER, name="Client#3", address="127.0.0.1:5003",
                          up=False, state="down", since_ms=86_400_000, detail="refused")],
        unanswered_addresses=2, forks=[Fork(author=OTHER_SELLER, seq=3)])
    lines = status_lines(status)
    assert lines[0] == "Client#1 (abababab) on 0.0.0.0:5001: 7 event(s) from 1 author(s)"
    assert lines[1] == "  peers dial 127.0.0.1:5001 (self-check passed)"
    assert lines[2].split()[:5] == ["peer", "Client#2", "(02020202)", "up", "since"]
    assert lines[2].endswith("at 127.0.0.1:5002")
    assert lines[3].split()[3:6] == ["down", "since", "1970-01-02"]  # not today: the date
    assert lines[3].endswith("last at 127.0.0.1:5003 (refused)")
    assert lines[4] == "  2 address(es) from Grape never answered"
    assert lines[5] == f"  FORK: author {OTHER_SELLER.hex()[:8]} published two events at seq 3"
    data = status_json(status)
    assert data["peers"][1]["since"] == "1970-01-02T00:00:00Z"
    assert data["forks"] == [{"author": OTHER_SELLER.hex(), "seq": 3}]
    assert data["heads"] == {SELLER.hex(): 7}

    alone = status_lines(StatusReply(node_id=SELLER, name="Client#1", address="x",
                                     self_check="failed", self_check_detail="unreachable"))
    assert alone[1:] == ["  self-check FAILED: unreachable", "  peers: none known yet"]
    assert status_json(StatusReply())["dial_address"] is None
