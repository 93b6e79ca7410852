"""Receipt changes (delivered / read / acknowledged), group-committed.

Why batched: 10,000 recipients opening a notice within seconds must not cost
10,000 commits (an fsync each on SQLite with ``synchronous=FULL``). Concurrent
calls are queued (``messaging.batching.Batcher``) and applied in one
transaction per batch: one read of the affected receipts per notice (locked
``FOR UPDATE`` on PostgreSQL, in id order, so concurrent processes neither lose
a reply nor deadlock), the new states computed in memory, one set-based UPDATE
(PostgreSQL) or executemany (SQLite) of the changed rows, on the raw driver
(``messaging/notices/storage.py``).
Each column only goes from NULL to a time, so repeats change nothing.
A failed batch is retried item by item by the Batcher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kernel.errors import Conflict, NotFound
from kernel.wire import iso
from messaging.events import driver_in_transaction, paused_gc
from messaging.notices.model import ReceiptState
from messaging.notices.storage import RECEIPT_TIMES, receipt_store
from messaging.unit_of_work import Txn, UnitOfWork

logger = logging.getLogger(__name__)

__all__ = ["ReceiptOp", "ReceiptWriter"]

_COLS = RECEIPT_TIMES


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
    #: Up to 2,048 changes per commit: when commits are fsync-bound (SQLite, a busy disk),
    #: the batch that forms while one commits is the lever; 2,048 rows are still one
    #: index scan and one UPDATE of a few milliseconds.
    def __init__(self, uow: UnitOfWork, *, max_batch: int = 2048) -> None:
        from messaging.batching import Batcher

        self._uow = uow
        self._batcher: Batcher[ReceiptOp, ReceiptOutcome] = uow.batcher(
            self._apply, max_batch=max_batch, name="notice-receipts"
        )

    async def submit(self, op: ReceiptOp) -> ReceiptOutcome:
        return await self._batcher.submit(op)

    def submit_many(self, ops: Sequence[ReceiptOp]) -> list[asyncio.Future[ReceiptOutcome]]:
        """Queue ``ops`` (the same batches as :meth:`submit`); one future each."""
        return [self._batcher.submit_nowait(op) for op in ops]

    async def close(self) -> None:
        await self._batcher.close()

    async def _apply(self, tx: Txn, ops: Sequence[ReceiptOp]) -> list[ReceiptOutcome | BaseException]:
        conn, now = tx.conn, tx.now
        # In the transaction (the FOR UPDATE locks must hold until the write commits).
        driver = await driver_in_transaction(conn)
        persons_of: dict[int, set[int]] = {}
        for op in ops:
            persons_of.setdefault(op.notice_id, set()).add(op.person_id)
        store = receipt_store(conn, driver)
        rows: dict[tuple[int, int], list[dict[str, Any]]] = {}
        notice_of: dict[int, int] = {}  # receipt id → notice id
        # Notices with at least one of the batch's receipts → recalled? (A missing
        # notice and a non-recipient both end as NotFound, so nothing else is read.)
        recalled: dict[int, bool] = {}
        # One locking read per notice, notices in id order, rows in id order.
        for nid in sorted(persons_of):
            for m in await store.lock(nid, sorted(persons_of[nid])):
                recalled[nid] = bool(m.pop("recalled"))
                notice_of[int(m["id"])] = nid
                rows.setdefault((nid, int(m["person_id"])), []).append(m)
        with paused_gc():  # thousands of small objects: no heap-wide collections midway
            out, dirty = _decide(ops, rows, recalled, now)
        if dirty:
            await store.save([dirty[rid] for rid in sorted(dirty)])
            # Acknowledgements are domain events for other platforms (docs/events.md):
            # recorded in this transaction, so an ack is never lost or announced twice.
            # Receipts read or delivered only, and receipts acknowledged before, are
            # skipped, so a repeated acknowledgement records nothing.
            for rid in sorted(rid for rid, m in dirty.items() if m["acked_at"] == now):
                tx.record("notice.acknowledged", "notice", notice_of[rid], _ack_body(dirty[rid], notice_of[rid], now))
        return out


def _ack_body(m: dict[str, Any], notice_id: int, now: datetime) -> dict[str, Any]:
    """The ``notice.acknowledged`` outbox payload of a receipt acknowledged at ``now`` (docs/events.md)."""
    return {
        "notice_id": notice_id,
        "receipt_id": int(m["id"]),
        "person_id": int(m["person_id"]),
        "position_id": int(m["position_id"]),
        "via_position_id": int(m["via_position_id"]),
        "reply": m["reply"],
        "acked_at": iso(now),
    }


def _decide(
    ops: Sequence[ReceiptOp],
    rows: dict[tuple[int, int], list[dict[str, Any]]],
    recalled: dict[int, bool],
    now: datetime,
) -> tuple[list[ReceiptOutcome | BaseException], dict[int, dict[str, Any]]]:
    """Each op's outcome, in order, and the rows it changed (by receipt id); pure, in memory."""
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
    return out, dirty
