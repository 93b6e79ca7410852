"""The per-person socket cap across every server process (Redis).

Each process already keeps a person's local sockets under the cap
(``ConnectionHub.register``); with several processes a person could open the
cap's worth on each. So each socket also claims a slot in one Redis sorted set
per person, ordered by a per-person counter (not wall clocks, which differ
between hosts). A claim that takes the set over the cap pops the oldest
members in the same script, atomically, and returns them; the hub closes
those sockets with 4509, locally or by a control message to the process that
holds them.

A process killed with ``-9`` leaves its members behind. They are harmless
where it matters: being the oldest, they are the first popped by the next
claim, so they never keep a new socket out; the key also expires a day after
its last claim. If Redis is unreachable a claim gives up after its timeout
and the cap holds per process only (logged), rather than refusing sign-ins.

Claims and releases travel together: those made while one script call is
on its way are sent as the next call, one script for all of them, applied in
the order they were made (so a socket's release never overtakes its claim).
Why: one command per hello and per close, each through redis-py's pool,
packing and parsing, was about a sixth of a reconnect storm's server CPU
(py-spy, issue 15). Each claim still runs the same steps on its person's
keys as before, atomically, one after the other. (The script names many
persons' keys; on a Redis Cluster it would need them grouped by hash slot.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis

from messaging.batching import Batcher

logger = logging.getLogger(__name__)

__all__ = ["RedisSlots", "SocketSlots"]

#: KEYS: two per operation, the person's set and the person's counter.
#: ARGV: cap, ttl seconds, then two per operation: 'c' (claim) or 'r' (release), the socket id.
#: Returns one list per operation: the socket ids a claim pushed out, oldest first.
_APPLY = """
local cap, ttl = tonumber(ARGV[1]), ARGV[2]
local out = {}
for i = 1, #KEYS / 2 do
  local set, counter, sid = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 * i + 2]
  local popped = {}
  if ARGV[2 * i + 1] == 'r' then
    redis.call('ZREM', set, sid)
  else
    local order = redis.call('INCR', counter)
    redis.call('ZADD', set, order, sid)
    redis.call('EXPIRE', set, ttl)
    redis.call('EXPIRE', counter, ttl)
    local excess = redis.call('ZCARD', set) - cap
    if excess > 0 then
      local p = redis.call('ZPOPMIN', set, excess)
      for j = 1, #p, 2 do
        popped[#popped + 1] = p[j]
      end
    end
  end
  out[i] = popped
end
return out
"""

#: Most operations in one script call (a reconnect storm's batches stay far below).
MAX_BATCH = 500


class SocketSlots(Protocol):
    def claim(self, person_id: int, socket_id: str) -> asyncio.Future[list[str]]:
        """Take a slot; resolves to the ids of the sockets that must now close (oldest first)."""
        ...

    def release(self, person_id: int, socket_id: str) -> asyncio.Future[list[str]]:
        """Give a slot back (applied after every claim made before it)."""
        ...

    async def close(self) -> None: ...


class RedisSlots:
    def __init__(self, url: str, *, prefix: str, cap: int, timeout: float = 1.0, ttl: int = 86_400) -> None:
        self._prefix = prefix
        self._cap = cap
        self._ttl = ttl
        # One script call at a time carries every claim and release waiting, so a
        # couple of connections are enough (one more for a call timing out).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=2, timeout=timeout, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._apply: Any = self._client.register_script(_APPLY)
        self._ops: Batcher[tuple[str, int, str], list[str]] = Batcher(
            self._run, max_batch=MAX_BATCH, name="socket-slots"
        )

    def claim(self, person_id: int, socket_id: str) -> asyncio.Future[list[str]]:
        return self._ops.submit_nowait(("c", person_id, socket_id))

    def release(self, person_id: int, socket_id: str) -> asyncio.Future[list[str]]:
        return self._ops.submit_nowait(("r", person_id, socket_id))

    async def _run(self, ops: Sequence[tuple[str, int, str]]) -> list[list[str] | BaseException]:
        keys: list[str] = []
        args: list[str | int] = [self._cap, self._ttl]
        for kind, person_id, socket_id in ops:
            keys += (f"{self._prefix}:sockets:{person_id}", f"{self._prefix}:sockets:{person_id}:n")
            args += (kind, socket_id)
        try:
            replies = await self._apply(keys=keys, args=args)
        except Exception as exc:
            # Redis away: every operation fails at once (not retried one by one, a timeout each).
            return [exc] * len(ops)
        return [[p.decode() if isinstance(p, bytes) else str(p) for p in popped] for popped in replies]

    async def close(self) -> None:
        """Apply what is queued (the last releases of a shutdown), then disconnect."""
        await self._ops.close()
        await self._client.aclose()
