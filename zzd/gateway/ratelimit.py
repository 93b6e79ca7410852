"""Per-person send rate limit (token bucket), per process.

A person's sockets usually land on one process; across processes the limit
is per process, which bounds abuse without a Redis round trip per send.
"""

from __future__ import annotations

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        #: person_id → (tokens, last refill time).
        self._buckets: dict[int, tuple[float, float]] = {}

    def allow(self, person_id: int, now: float) -> bool:
        tokens, last = self._buckets.get(person_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[person_id] = (tokens, now)
            return False
        self._buckets[person_id] = (tokens - 1.0, now)
        return True

    def forget(self, person_id: int) -> None:
        self._buckets.pop(person_id, None)
