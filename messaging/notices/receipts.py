"""Receipt changes (delivered / read / acknowledged), group-committed.

Why batched: 10,000 recipients opening a notice within seconds must not cost
10,000 commits (an fsync each on SQLite with ``synchronous=FULL``). Concurrent
calls are queued (``messaging.batching.Batcher``) and applied in one
transaction per batch: one read of the affected receipts per notice (locked
``FOR UPDATE`` on PostgreSQL, in id order, so concurrent processes neither lose
a reply nor deadlock), the new states computed in memory, one set-based UPDATE
(PostgreSQL) or executemany (SQLite) of the changed rows, on the raw driver.
Each column only goes from NULL to a time, so repeats change nothing.
A failed batch is retried item by item by the Batcher.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kernel.db.dialect import is_postgres
from kernel.errors import Conflict, NotFound
from kernel.wire import iso
from messaging.events import driver_in_transaction, paused_gc
from messaging.notices.model import ReceiptState
from messaging.unit_of_work import Txn, UnitOfWork

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
    #: Up to 2,048 changes per commit: when commits are fsync-bound (SQLite, a busy disk),
    #: the batch that forms while one commits is the lever; 2,048 rows are still one
    #: index scan and one UPDATE of a few milliseconds.
    def __init__(self, uow: UnitOfWork, *, max_batch: int = 2048) -> None:
        from messaging.batching import Batcher

        self._uow = uow
        self._batcher: Batcher[ReceiptOp, ReceiptOutcome] = Batcher(
            self._apply_batch, max_batch=max_batch, name="notice-receipts"
        )

    async def submit(self, op: ReceiptOp) -> ReceiptOutcome:
        return await self._batcher.submit(op)

    async def close(self) -> None:
        await self._batcher.close()

    async def _apply_batch(self, ops: Sequence[ReceiptOp]) -> list[ReceiptOutcome | BaseException]:
        return await self._uow.run(lambda tx: self._apply(tx, ops))

    async def _apply(self, tx: Txn, ops: Sequence[ReceiptOp]) -> list[ReceiptOutcome | BaseException]:
        conn, now = tx.conn, tx.now
        # In the transaction (the FOR UPDATE locks must hold until the write commits).
        driver = await driver_in_transaction(conn)
        persons_of: dict[int, set[int]] = {}
        for op in ops:
            persons_of.setdefault(op.notice_id, set()).add(op.person_id)
        store = _PgStore(driver) if is_postgres(conn) else _SqliteStore(driver)
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


_SELECT = (
    "SELECT r.id, r.person_id, r.position_id, r.via_position_id, r.reply, r.delivered_at, r.read_at, r.acked_at,"
    " n.recalled_at IS NOT NULL FROM notice_receipts AS r JOIN notices AS n ON n.id = r.notice_id"
)
_FIELDS = ("id", "person_id", "position_id", "via_position_id", "reply", *_COLS, "recalled")


class _PgStore:
    """asyncpg statements: ``person_id = ANY($2)`` is one index scan (a row-value IN list
    of pairs was the bottleneck), and the changed rows go back in one set-based UPDATE."""

    def __init__(self, driver: Any) -> None:
        self._d = driver

    async def lock(self, notice_id: int, persons: list[int]) -> list[dict[str, Any]]:
        rows = await self._d.fetch(
            f"{_SELECT} WHERE r.notice_id = $1 AND r.person_id = ANY($2::bigint[]) ORDER BY r.id FOR UPDATE OF r",  # noqa: S608
            notice_id,
            persons,
        )
        return [dict(zip(_FIELDS, r, strict=True)) for r in rows]

    async def save(self, rows: list[dict[str, Any]]) -> None:
        await self._d.execute(
            "UPDATE notice_receipts AS r SET delivered_at = u.d, read_at = u.rd, acked_at = u.a, reply = u.rep"
            " FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::text[])"
            " AS u(id, d, rd, a, rep) WHERE r.id = u.id",
            [m["id"] for m in rows],
            [m["delivered_at"] for m in rows],
            [m["read_at"] for m in rows],
            [m["acked_at"] for m in rows],
            [m["reply"] for m in rows],
        )


def _from_sqlite(value: Any) -> datetime | None:
    if value is None:
        return None
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _to_sqlite(value: datetime | None) -> str | None:
    # The text SQLAlchemy's SQLite DateTime writes (see org_tree.bulk), so both paths read alike.
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class _SqliteStore:
    """Plain sqlite3 statements through aiosqlite: SQLAlchemy's per-row parameter and
    result processing cost more than SQLite itself here (one writer, so no locking read)."""

    def __init__(self, driver: Any) -> None:
        self._d = driver

    async def lock(self, notice_id: int, persons: list[int]) -> list[dict[str, Any]]:
        rows = await self._d.execute_fetchall(
            f"{_SELECT} WHERE r.notice_id = ? AND r.person_id IN (SELECT value FROM json_each(?)) ORDER BY r.id",  # noqa: S608
            (notice_id, json.dumps(persons)),
        )
        out = []
        for r in rows:
            m = dict(zip(_FIELDS, r, strict=True))
            for c in _COLS:
                m[c] = _from_sqlite(m[c])
            out.append(m)
        return out

    async def save(self, rows: list[dict[str, Any]]) -> None:
        await self._d.executemany(
            "UPDATE notice_receipts SET delivered_at = ?, read_at = ?, acked_at = ?, reply = ? WHERE id = ?",
            [(*(_to_sqlite(m[c]) for c in _COLS), m["reply"], m["id"]) for m in rows],
        )
