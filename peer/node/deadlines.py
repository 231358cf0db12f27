"""Auctions that end on time: the seller's node closes them, the others say they ended.
"""

from __future__ import annotations

import logging

import trio

from peer.core.auctions import Auction
from peer.core.rules import Rejection
from peer.core.sealed_reserve import Sealed, open_box
from peer.gen.auction.v1 import Close, RejectCode
from peer.net.notifications import ended_message
from peer.net.rpc import StorageUnavailable
from peer.node.event_log import EventLog

log = logging.getLogger(__name__)


# After a failed automatic close (storage trouble), try again this much later.
CLOSE_RETRY_DELAY = 1.0


class Deadlines(EventLog):
    """Closes this node's auctions at their ends; says when others' auctions end."""

    async def close_overdue(self) -> int:
        """Close every auction of ours whose end has passed; returns how many.

        Called before the node serves anything, so a seller that was offline at an end
        closes first thing on its return; a bid that reaches it later is too late.
        """
        assert self.identity is not None
        own = self.identity.node_id
        ended, _ = self.ledger.timed_open_due(self.wall_clock_ms())
        closed = 0
        for auction in ended:
            if auction.seller == own:
                try:
                    await self._close_ended(auction)
                except StorageUnavailable as exc:
                    # Start anyway: bids are refused by the end's stamp, and the
                    # deadline loop closes it once the log can be written again.
                    log.warning("%s: cannot close %s yet: %s", self.config.name,
                                auction.label, exc.reason)
                    return closed
                log.info("%s: closed %s, which ended while this node was offline",
                         self.config.name, auction.label)
                closed += 1
        return closed

    async def deadline_loop(self) -> None:
        """Close our auctions at their ends; say when other sellers' auctions end.

        Sleeps until the soonest current end among open timed auctions, or until
        events are applied (a bid may move an end, an Open may add one).
        """
        while True:
            changed = self._deadlines_changed = trio.Event()
            try:
                due_in_ms = await self._handle_due()
            except StorageUnavailable as exc:  # the outage is logged where it starts
                log.debug("%s: automatic close waits for the log: %s", self.config.name,
                          exc.reason)
                # A plain sleep: the failed write itself set `changed`.
                await trio.sleep(CLOSE_RETRY_DELAY)
                continue
            except Exception:  # a bug: say so, keep the node, try again later
                log.exception("%s: automatic close failed; retrying in %.0f s",
                              self.config.name, CLOSE_RETRY_DELAY)
                await trio.sleep(CLOSE_RETRY_DELAY)
                continue
            if due_in_ms is None:
                await changed.wait()
            else:
                with trio.move_on_after(due_in_ms / 1000):
                    await changed.wait()

    async def _handle_due(self) -> int | None:
        """Act on every auction past its end; ms until the next end (None: no end).

        Runs after every applied event: it costs O(log n) for n open timed auctions
        (``Ledger.timed_open_due``), plus what the auctions past their end ask for.
        """
        assert self.identity is not None
        own = self.identity.node_id
        # Closed ones need no memory any more: keeps the set as small as what is open.
        self._ended_announced.difference_update(
            [key for key in self._ended_announced if not self.ledger.is_timed_open(key)])
        ended, following = self.ledger.timed_open_due(self.wall_clock_ms())
        for auction in ended:
            if auction.seller == own:
                await self._close_ended(auction)
            elif auction.key not in self._ended_announced:
                self._ended_announced.add(auction.key)
                message = ended_message(auction, self.wall_clock_ms())
                if self._ready:
                    self.reports.notification(message)
                self._send_watchers(message)
        if following is None:
            return None
        # Closing may have taken a while: an end passed meanwhile is due at once.
        return max(0, following - self.wall_clock_ms())

    async def _close_ended(self, auction: Auction) -> None:
        assert self.identity is not None
        if self.ledger.check_close(auction.key, self.identity.node_id) is not None:
            return  # closed meanwhile (by hand, while we awaited)
        close = self._close_body(auction)
        if isinstance(close, Rejection):
            log.error("%s: cannot close %s: %s", self.config.name, auction.label, close)
            return
        await self._author(close=close)

    def _close_body(self, auction: Auction) -> Close | Rejection:
        """Our Close of ``auction``, revealing its sealed reserve if it has one."""
        assert self.identity is not None
        terms = auction.terms
        if not terms.sealed_reserve:
            return Close(auction=auction.key.message())
        reveal = open_box(self.identity, Sealed(terms.sealed_reserve, terms.sealed_box))
        if reveal is None:  # only if the Open was not sealed with this node's key
            return Rejection(RejectCode.BAD_TERMS,
                             f"this node cannot reveal the sealed reserve of {auction.label}")
        return Close(auction=auction.key.message(), reserve=reveal.reserve,
                     reserve_key=reveal.key)
