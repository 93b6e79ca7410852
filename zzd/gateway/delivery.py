"""Per-connection ordering of the event stream, free of I/O so it can be tested alone.

A connection must see its person's events strictly in sequence, without
gaps or repeats, whichever way they arrive: live through the hub (possibly
out of order when several processes commit for one person, or lost), or
read back from the database (catch-up).

The cursor is the last seq handed to the socket. An event past a gap is
held briefly (a reorder buffer): usually the missing one is a wake-up still
on its way from another process, and holding avoids a database read per
socket. If the gap is still open when the connection's gap timer fires, or
the buffer is full, a catch-up reads from the database. While a catch-up
runs, live events are only remembered as "seen", and the catch-up keeps
reading until it has passed everything seen (docs/reliability.md decision 7:
subscribe, read, merge by sequence).
"""

from __future__ import annotations

__all__ = ["DeliveryCursor"]


class DeliveryCursor:
    __slots__ = ("_held", "_max_held", "catching_up", "cursor", "max_seen")

    def __init__(self, max_held: int = 64) -> None:
        #: Last seq handed to the socket; None until the start position is known.
        self.cursor: int | None = None
        #: Highest seq announced by any source; a catch-up must reach it.
        self.max_seen = 0
        #: True while a catch-up task owns delivery.
        self.catching_up = False
        #: Events past a gap, waiting for the gap to fill: seq → frame (created on the first gap).
        self._held: dict[int, str] | None = None
        self._max_held = max_held

    @property
    def has_gap(self) -> bool:
        """Events are held past a gap (the connection should arm its gap timer)."""
        return bool(self._held) and not self.catching_up

    def start(self, cursor: int) -> bool:
        """Fix the starting position; True if a catch-up is needed right away."""
        self.cursor = cursor
        self._held = None
        if self.max_seen > cursor:
            self.catching_up = True
            return True
        return False

    def offer(self, seq: int, frame: str) -> list[str]:
        """A live event arrived; returns the frames to send now, in order."""
        self.max_seen = max(self.max_seen, seq)
        if self.cursor is None or self.catching_up or seq <= self.cursor:
            return []
        if seq == self.cursor + 1:
            out = [frame]
            self.cursor = seq
            held = self._held
            while held and self.cursor + 1 in held:
                self.cursor += 1
                out.append(held.pop(self.cursor))
            return out
        if self._held is None:
            self._held = {}
        if len(self._held) < self._max_held:
            self._held[seq] = frame
        else:
            self._begin_catch_up()
        return []

    def gap_timeout(self) -> bool:
        """The gap timer fired; True if the gap is still open and a catch-up must start."""
        if self.catching_up or not self._held:
            return False
        self._begin_catch_up()
        return True

    def nudge(self, head: int) -> bool:
        """The database says the stream reaches ``head``; True if a catch-up should start."""
        self.max_seen = max(self.max_seen, head)
        if self.cursor is None or self.catching_up or head <= self.cursor:
            return False
        self._begin_catch_up()
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

    def _begin_catch_up(self) -> None:
        self._held = None
        self.catching_up = True
