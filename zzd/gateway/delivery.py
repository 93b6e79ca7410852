"""Per-connection ordering of the event stream, free of I/O so it can be tested alone.

A connection must see its person's events strictly in sequence, without
gaps or repeats, whichever way they arrive: live through the hub (possibly
out of order, or lost), or read back from the database (catch-up). The
cursor is the last seq handed to the socket. While a catch-up runs, live
events are only remembered as "seen", and the catch-up keeps reading until
it has passed everything seen (RELIABILITY.md decision 7: subscribe, read,
merge by sequence).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["DeliveryCursor", "Verdict"]


class Verdict(Enum):
    SEND = "send"  # the next event: hand it to the socket now
    DROP = "drop"  # already delivered (or before this connection's start)
    CATCH_UP = "catch_up"  # a gap: start reading from the database
    WAIT = "wait"  # a catch-up is running (or the start is not known yet)


class DeliveryCursor:
    def __init__(self) -> None:
        #: Last seq handed to the socket; None until the start position is known.
        self.cursor: int | None = None
        #: Highest seq announced by any source; a catch-up must reach it.
        self.max_seen = 0
        #: True while a catch-up task owns delivery.
        self.catching_up = False

    def start(self, cursor: int) -> bool:
        """Fix the starting position; True if a catch-up is needed right away."""
        self.cursor = cursor
        if self.max_seen > cursor:
            self.catching_up = True
            return True
        return False

    def offer(self, seq: int) -> Verdict:
        """A live event arrived."""
        self.max_seen = max(self.max_seen, seq)
        if self.cursor is None or self.catching_up:
            return Verdict.WAIT
        if seq <= self.cursor:
            return Verdict.DROP
        if seq == self.cursor + 1:
            self.cursor = seq
            return Verdict.SEND
        self.catching_up = True
        return Verdict.CATCH_UP

    def nudge(self, head: int) -> bool:
        """The database says the stream reaches ``head``; True if a catch-up should start."""
        self.max_seen = max(self.max_seen, head)
        if self.cursor is None or self.catching_up or head <= self.cursor:
            return False
        self.catching_up = True
        return True

    def take_stored(self, seq: int) -> bool:
        """During catch-up: True if this stored event is the next to send."""
        assert self.cursor is not None
        if seq == self.cursor + 1:
            self.cursor = seq
            return True
        return False

    def finish_page(self, page_full: bool) -> bool:
        """After a catch-up page: True to read another page, False when caught up."""
        assert self.cursor is not None
        if page_full or self.max_seen > self.cursor:
            return True
        self.catching_up = False
        return False

    def abort(self) -> None:
        """A catch-up failed (database down): let the next nudge or offer retry."""
        self.catching_up = False
