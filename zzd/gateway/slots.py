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
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

__all__ = ["RedisSlots", "SocketSlots"]

#: KEYS: the person's set, the person's counter. ARGV: socket id, cap, ttl seconds.
_CLAIM = """
local order = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], order, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if excess <= 0 then
  return {}
end
local popped = redis.call('ZPOPMIN', KEYS[1], excess)
local out = {}
for i = 1, #popped, 2 do
  out[#out + 1] = popped[i]
end
return out
"""


class SocketSlots(Protocol):
    async def claim(self, person_id: int, socket_id: str) -> list[str]:
        """Take a slot; returns the ids of the sockets that must now close (oldest first)."""
        ...

    async def release(self, person_id: int, socket_id: str) -> None: ...

    async def close(self) -> None: ...


class RedisSlots:
    def __init__(self, url: str, *, prefix: str, cap: int, timeout: float = 1.0, ttl: int = 86_400) -> None:
        self._prefix = prefix
        self._cap = cap
        self._ttl = ttl
        # A few connections, shared: a reconnect storm's hundreds of claims queue on
        # them (each is one short script) instead of opening a connection apiece.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=4, timeout=timeout, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._claim: Any = self._client.register_script(_CLAIM)

    def _keys(self, person_id: int) -> list[str]:
        return [f"{self._prefix}:sockets:{person_id}", f"{self._prefix}:sockets:{person_id}:n"]

    async def claim(self, person_id: int, socket_id: str) -> list[str]:
        popped = await self._claim(keys=self._keys(person_id), args=[socket_id, self._cap, self._ttl])
        return [p.decode() if isinstance(p, bytes) else str(p) for p in popped]

    async def release(self, person_id: int, socket_id: str) -> None:
        await self._client.zrem(self._keys(person_id)[0], socket_id)

    async def close(self) -> None:
        await self._client.aclose()
