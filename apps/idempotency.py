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

__all__ = ["IdempotencyStore", "check_key"]


def check_key(raw: str | None) -> str:
    """A key is 1..64 visible ASCII characters."""
    if raw is None or not 1 <= len(raw) <= 64 or not all(33 <= ord(c) <= 126 for c in raw):
        raise BadRequest(
            "send an Idempotency-Key header of 1..64 visible ASCII characters", data={"header": "Idempotency-Key"}
        )
    return raw


class IdempotencyStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def run(
        self, app_id: int, key: str, request: str, body: bytes, fn: Callable[[], Awaitable[tuple[int, Any]]]
    ) -> tuple[int, Any, bool]:
        """``(status, answer, replayed)``: the first answer for ``key``, or ``fn()``'s."""
        digest = hashlib.sha256(body).hexdigest()
        t = app_idempotency
        async with self._db.write() as conn:
            await conn.execute(
                insert_ignore(conn, t, ["app_id", "key"]).values(
                    app_id=app_id, key=key, request=request[:200], body_hash=digest, created_at=self._clock.now()
                )
            )
            row = (await conn.execute(select(t).where(t.c.app_id == app_id, t.c.key == key))).one()
        if row.request != request[:200] or row.body_hash != digest:
            raise Conflict(
                "this Idempotency-Key was used for another request",
                code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
                data={"key": key},
            )
        if row.status is not None:
            return int(row.status), json.loads(row.response), True
        # New, or a first attempt that died before recording its answer: the service's own
        # client_msg_id idempotency makes running it again return what it made.
        try:
            status, answer = await fn()
        except Exception:
            async with self._db.write() as conn:
                await conn.execute(delete(t).where(t.c.app_id == app_id, t.c.key == key, t.c.status.is_(None)))
            raise
        async with self._db.write() as conn:
            await conn.execute(
                update(t)
                .where(t.c.app_id == app_id, t.c.key == key)
                .values(status=status, response=json.dumps(answer, ensure_ascii=False))
            )
        return status, answer, False
