"""The transactional outbox: durable domain events written in the same transaction as the change.

Why: a later apps-platform relay must deliver every report, task transition
and notice acknowledgement to subscribed platforms without the person who
acted doing anything more. Writing the event row inside the change's own
transaction means there is never a committed change without its event, nor an
event for a change that rolled back. The relay (not built yet) reads rows with
``published_at IS NULL`` in ``id`` order, delivers them at least once, and
stamps ``published_at``; consumers deduplicate by ``event_id``.

Event types and payloads are documented in ``docs/events.md``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.schema import outbox_events

logger = logging.getLogger(__name__)

__all__ = [
    "OutboxEvent",
    "event_row",
    "mark_published",
    "read_unpublished",
    "record",
    "record_many",
]

AGGREGATES = ("report", "task", "notice")


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    event_id: str
    type: str
    aggregate: str
    aggregate_id: int
    payload: dict[str, Any]
    created_at: datetime


async def record(
    conn: AsyncConnection,
    *,
    type: str,  # noqa: A002 - the documented field name of an event
    aggregate: str,
    aggregate_id: int,
    payload: dict[str, Any],
    now: datetime | None = None,
) -> str:
    """Write one domain event inside the caller's transaction; returns its stable ``event_id``.

    Args:
        conn: the transaction that makes the change the event describes.
        type: e.g. ``task.accepted`` (docs/events.md lists them all).
        aggregate: ``report``, ``task`` or ``notice``.
        aggregate_id: that object's id.
        payload: JSON-serialisable body (no NaN; text already validated by the caller).
        now: the change's time (default: the wall clock).
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}")
    row = event_row(type, aggregate, aggregate_id, payload, now or datetime.now(UTC))
    await conn.execute(outbox_events.insert().values(**row))
    return str(row["event_id"])


def event_row(
    type_: str, aggregate: str, aggregate_id: int, payload: dict[str, Any] | str, now: datetime
) -> dict[str, Any]:
    """One outbox row (with a fresh ``event_id``) for callers that insert many in one statement.

    ``payload``: the body, or its JSON already written (compact, UTF-8 unescaped) by a caller
    that sends the same text elsewhere too.
    """
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "aggregate": aggregate,
        "aggregate_id": aggregate_id,
        "payload": payload
        if isinstance(payload, str)
        else json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")),
        "created_at": now,
        "published_at": None,
    }


async def record_many(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows made by :func:`event_row` in one statement, inside the caller's transaction."""
    if rows:
        await conn.execute(outbox_events.insert(), list(rows))


async def read_unpublished(conn: AsyncConnection, *, after: int = 0, limit: int = 500) -> list[OutboxEvent]:
    """Unpublished events after row ``after`` in id order (the relay's read, also used by tests)."""
    o = outbox_events
    rows = await conn.execute(
        select(o).where(o.c.published_at.is_(None), o.c.id > after).order_by(o.c.id).limit(max(1, min(limit, 5000)))
    )
    return [
        OutboxEvent(
            int(r.id), r.event_id, r.type, r.aggregate, int(r.aggregate_id), json.loads(r.payload), r.created_at
        )
        for r in rows
    ]


async def mark_published(conn: AsyncConnection, ids: Sequence[int], now: datetime) -> int:
    """Stamp delivered events (idempotent: a second stamp changes nothing)."""
    if not ids:
        return 0
    o = outbox_events
    res = await conn.execute(
        update(o).where(o.c.id.in_(list(ids)), o.c.published_at.is_(None)).values(published_at=now)
    )
    return int(res.rowcount)
