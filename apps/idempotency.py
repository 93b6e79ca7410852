"""Idempotency keys on every create of the bot API (``Idempotency-Key`` header).

Why a table besides the services' own ``client_msg_id``: the services already
make a retried create return what the first one made (the key is passed down
as ``client_msg_id``), but only this record knows the *answer* the first
request got and which request the key belonged to. So a retry gets the very
same status and body, and the same key on a different request or body is
refused (409 ``idempotency_key_reused``) instead of silently answering
something else. A create that failed with an error frees its key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import delete, select, update

from apps.schema import app_idempotency
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import insert_ignore
from kernel.errors import BadRequest, Conflict, ErrorCode

__all__ = ["IN_FLIGHT_WAIT", "IdempotencyStore", "check_key"]

#: Seconds a retry waits for the answer of a first request still running before running the create itself.
IN_FLIGHT_WAIT = 10.0
#: Seconds between two reads of a record still waiting for its answer.
_POLL = 0.02


def check_key(raw: str | None) -> str:
    """A key is 1..64 visible ASCII characters."""
    if raw is None or not 1 <= len(raw) <= 64 or not all(33 <= ord(c) <= 126 for c in raw):
        raise BadRequest(
            "send an Idempotency-Key header of 1..64 visible ASCII characters", data={"header": "Idempotency-Key"}
        )
    return raw


class IdempotencyStore:
    def __init__(self, db: Database, clock: Clock, in_flight_wait: float = IN_FLIGHT_WAIT) -> None:
        self._db = db
        self._clock = clock
        self._in_flight_wait = in_flight_wait

    async def run(
        self, app_id: int, key: str, request: str, body: bytes, fn: Callable[[], Awaitable[tuple[int, Any]]]
    ) -> tuple[int, Any, bool]:
        """``(status, answer, replayed)``: the first answer for ``key``, or ``fn()``'s.

        A retry that finds the first request still running (its record has no answer yet) waits for that
        answer, up to ``in_flight_wait`` seconds from the record's creation, instead of running the create
        beside it: the service would answer that run as a duplicate (200, ``duplicate: true``), not the
        first answer. Only the first answer recorded is kept, so a late duplicate never replaces it.
        """
        digest = hashlib.sha256(body).hexdigest()
        t = app_idempotency
        this = (t.c.app_id == app_id) & (t.c.key == key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._in_flight_wait
        while True:
            async with self._db.write() as conn:
                made = await conn.execute(
                    insert_ignore(conn, t, ["app_id", "key"]).values(
                        app_id=app_id, key=key, request=request[:200], body_hash=digest, created_at=self._clock.now()
                    )
                )
                row = (await conn.execute(select(t).where(this))).one()
            if row.request != request[:200] or row.body_hash != digest:
                raise Conflict(
                    "this Idempotency-Key was used for another request",
                    code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
                    data={"key": key},
                )
            if row.status is not None:
                return int(row.status), json.loads(row.response), True
            # Ours, or a first attempt that died before recording its answer (its record is older than the
            # wait): the service's own client_msg_id idempotency makes running it again return what it made.
            stale = (self._clock.now() - row.created_at).total_seconds() >= self._in_flight_wait
            if made.rowcount == 1 or stale or loop.time() >= deadline:
                break
            await asyncio.sleep(_POLL)
        try:
            status, answer = await fn()
        except Exception:
            async with self._db.write() as conn:
                await conn.execute(delete(t).where(this, t.c.status.is_(None)))
            raise
        async with self._db.write() as conn:
            done = await conn.execute(
                update(t)
                .where(this, t.c.status.is_(None))
                .values(status=status, response=json.dumps(answer, ensure_ascii=False))
            )
            if done.rowcount == 0:
                first = (await conn.execute(select(t.c.status, t.c.response).where(this))).one_or_none()
                if first is not None and first.status is not None:
                    return int(first.status), json.loads(first.response), True
        return status, answer, False
