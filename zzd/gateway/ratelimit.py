"""Per-person send rate limit (token bucket), per process.

A person's sockets usually land on one process; across processes the limit
is per process, which bounds abuse without a Redis round trip per send.
"""

from __future__ import annotations

__all__ = ["RateLimiter"]


class RateLimiter:
    """``allow`` refills and takes a token; ``persisting`` tells a client that ignores refusals.

    A refused send is answered ``rate_limited`` and the socket stays open; a
    client that keeps sending anyway (``abuse_after`` refusals within a
    minute) is abusing it, and the gateway closes that socket with 1008
    (RELIABILITY S16 c). Nothing acknowledged is ever dropped: a refused send
    was never stored.
    """

    def __init__(self, per_minute: int, *, abuse_after: int = 20) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._abuse_after = abuse_after
        #: person_id → (tokens, last refill time).
        self._buckets: dict[int, tuple[float, float]] = {}
        #: person_id → (refusals, time of the first in this minute).
        self._refusals: dict[int, tuple[int, float]] = {}

    def allow(self, person_id: int, now: float) -> bool:
        tokens, last = self._buckets.get(person_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[person_id] = (tokens, now)
            count, since = self._refusals.get(person_id, (0, now))
            self._refusals[person_id] = (count + 1, since) if now - since < 60.0 else (1, now)
            return False
        self._buckets[person_id] = (tokens - 1.0, now)
        return True

    def persisting(self, person_id: int, now: float) -> bool:
        """True once this person was refused ``abuse_after`` times within the last minute."""
        count, since = self._refusals.get(person_id, (0, now))
        return now - since < 60.0 and count >= self._abuse_after

    def forget(self, person_id: int) -> None:
        self._buckets.pop(person_id, None)
        self._refusals.pop(person_id, None)
