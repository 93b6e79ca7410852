"""Receipt changes (delivered / read / acknowledged), group-committed.

Why batched: 10,000 recipients opening a notice within seconds must not cost
10,000 commits (an fsync each on SQLite with ``synchronous=FULL``). Concurrent
calls are queued (``messaging.batching.Batcher``) and applied in one
transaction per batch: one read of the affected receipts (locked ``FOR UPDATE``
on PostgreSQL, in id order, so concurrent processes neither lose a reply nor
deadlock), the new states computed in memory, one executemany of the changed
rows. Each column only goes from NULL to a time, so repeats change nothing.
A failed batch is retried item by item by the Batcher.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.db_errors import with_db_retry
from messaging.notices.model import ReceiptState
from messaging.notices.schema import notice_receipts, notices
from org_tree.clock import Clock
from org_tree.db.database import Database
from org_tree.db.dialect import chunks
from org_tree.errors import Conflict, NotFound

logger = logging.getLogger(__name__)

__all__ = ["ReceiptOp", "ReceiptWriter"]

_COLS = ("delivered_at", "read_at", "acked_at")


@dataclass(frozen=True, slots=True)
class ReceiptOp:
    person_id: int
    notice_id: int
    what: str  # delivered | read | acked
    position_id: int | None = None
    reply: str | None = None


@dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    states: list[ReceiptState]
    changed: bool


def _not_found(notice_id: int) -> NotFound:
    return NotFound("no such notice", data={"notice_id": notice_id})


class ReceiptWriter:
    def __init__(self, db: Database, clock: Clock, *, max_batch: int = 512) -> None:
        from messaging.batching import Batcher

        self._db = db
        self._clock = clock
        self._batcher: Batcher[ReceiptOp, ReceiptOutcome] = Batcher(
            self._apply_batch, max_batch=max_batch, name="notice-receipts"
        )

    async def submit(self, op: ReceiptOp) -> ReceiptOutcome:
        return await self._batcher.submit(op)

    async def close(self) -> None:
        await self._batcher.close()

    async def _apply_batch(self, ops: Sequence[ReceiptOp]) -> list[ReceiptOutcome | BaseException]:
        async def txn() -> list[ReceiptOutcome | BaseException]:
            async with self._db.write() as conn:
                return await self._apply(conn, ops, self._clock.now())

        return await with_db_retry(txn)

    async def _apply(
        self, conn: AsyncConnection, ops: Sequence[ReceiptOp], now: datetime
    ) -> list[ReceiptOutcome | BaseException]:
        r = notice_receipts
        notice_ids = sorted({op.notice_id for op in ops})
        recalled: dict[int, bool] = {}
        for part in chunks(notice_ids, 1000):
            for nid, at in await conn.execute(
                select(notices.c.id, notices.c.recalled_at).where(notices.c.id.in_(part))
            ):
                recalled[int(nid)] = at is not None
        keys = sorted({(op.notice_id, op.person_id) for op in ops})
        rows: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for part in chunks(keys, 1000):
            q = (
                select(
                    r.c.id,
                    r.c.notice_id,
                    r.c.person_id,
                    r.c.position_id,
                    r.c.via_position_id,
                    r.c.reply,
                    *(r.c[c] for c in _COLS),
                )
                .where(tuple_(r.c.notice_id, r.c.person_id).in_(part))
                .order_by(r.c.id)
                .with_for_update()
            )
            for row in await conn.execute(q):
                m = dict(row._mapping)
                rows.setdefault((int(m["notice_id"]), int(m["person_id"])), []).append(m)
        dirty: dict[int, dict[str, Any]] = {}
        out: list[ReceiptOutcome | BaseException] = []
        for op in ops:
            mine = [m for m in rows.get((op.notice_id, op.person_id), []) if op.position_id in (None, m["position_id"])]
            if op.notice_id not in recalled or not mine:
                out.append(_not_found(op.notice_id))
                continue
            if recalled[op.notice_id]:
                out.append(Conflict("the notice was recalled", data={"notice_id": op.notice_id, "recalled": True}))
                continue
            stamps = {"delivered": _COLS[:1], "read": _COLS[:2], "acked": _COLS}[op.what]
            changed = False
            for m in mine:
                for col in stamps:
                    if m[col] is None:
                        m[col] = now
                        changed = True
                        if col == "acked_at" and op.reply is not None:
                            m["reply"] = op.reply
                        dirty[int(m["id"])] = m
            every = sorted(rows[(op.notice_id, op.person_id)], key=lambda m: m["position_id"])
            states = [
                ReceiptState(
                    op.notice_id,
                    int(m["position_id"]),
                    int(m["via_position_id"]),
                    m["delivered_at"],
                    m["read_at"],
                    m["acked_at"],
                    m["reply"],
                )
                for m in every
            ]
            out.append(ReceiptOutcome(states, changed))
        if dirty:
            stmt = (
                update(r)
                .where(r.c.id == bindparam("rid"))
                .values(
                    delivered_at=bindparam("d"),
                    read_at=bindparam("rd"),
                    acked_at=bindparam("a"),
                    reply=bindparam("rep"),
                )
            )
            params = [
                {"rid": rid, "d": m["delivered_at"], "rd": m["read_at"], "a": m["acked_at"], "rep": m["reply"]}
                for rid, m in sorted(dirty.items())
            ]
            for part in chunks(params, 5000):
                await conn.execute(stmt, part)
        return out
