"""The audit log: append-only, hash-chained, written in the transaction of the change it records.

Why a chain: a row that records who changed the org, sent a notice or signed in
is worth something only if nobody can quietly edit, insert or delete one. Each
entry carries the SHA-256 of the entry before it and its own hash over every
field (its id included); ``audit_head`` holds the last id and hash. Ids are
dense (``last_id + 1``, assigned under the head's row lock), so ``verify``
notices an edited row (its hash no longer matches), a deleted one (a gap, and
the next row's ``prev_hash`` no longer matches), an inserted one (the chain
forks) and a cut tail (the head names a later row). Pruning by retention moves
the chain's anchor forward (``pruned_through_*``) instead of breaking it.

Why in the same transaction: an entry exists exactly when its change
committed; the head row lock also orders entries in commit order across
processes. The lock is held only to the end of the writing transaction.

Callers from every layer use :func:`record` with the connection they write
with; one call per change keeps the hook small.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Table, Text, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.base import UTCDateTime, metadata
from kernel.db.database import Database
from kernel.db.dialect import for_update
from kernel.db.types import ID

logger = logging.getLogger(__name__)

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditQuery",
    "VerifyReport",
    "audit_head",
    "audit_log",
    "prune",
    "query",
    "record",
    "record_many",
    "verify",
]

#: ``prev_hash`` of the very first entry.
GENESIS = "0" * 64

audit_log = Table(
    "audit_log",
    metadata,
    # Dense: the head's last_id + 1, never autoincrement (a gap is evidence).
    Column("id", ID, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    # No foreign keys: a record outlives what it names, and a failed sign-in may name nobody.
    Column("actor_person_id", ID, nullable=True),
    Column("acting_position_id", ID, nullable=True),
    # e.g. org.handover, notice.sent, auth.login_failed, admin.denied (docs/admin.md lists them)
    Column("action", String(64), nullable=False),
    # ok | denied | failed
    Column("outcome", String(16), nullable=False),
    Column("unit_id", ID, nullable=True),
    # "/<root id>/…/<unit id>/" at the time of the entry, so auditors filter by subtree with a prefix.
    Column("unit_path", String(400), nullable=True),
    # Canonical JSON (sorted keys) of what the action was about.
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_actor", "actor_person_id"),
    Index("ix_audit_log_unit_path", "unit_path"),
)

audit_head = Table(
    "audit_head",
    metadata,
    # Exactly one row (id = 1), locked by every append.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_id", ID, nullable=False),
    Column("last_hash", String(64), nullable=False),
    # The newest entry removed by retention (0 / GENESIS before any pruning).
    Column("pruned_through_id", ID, nullable=False),
    Column("pruned_through_hash", String(64), nullable=False),
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One thing that happened. ``unit_path`` is ``/id/…/id/`` root first (``org_tree`` computes it)."""

    action: str
    actor_person_id: int | None = None
    acting_position_id: int | None = None
    outcome: str = "ok"
    unit_id: int | None = None
    unit_path: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _canonical_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _detail_text(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def entry_hash(row: dict[str, Any]) -> str:
    """SHA-256 over every field of a stored row (``at`` to the microsecond, UTC)."""
    fields = [
        int(row["id"]),
        _canonical_time(row["at"]),
        row["actor_person_id"],
        row["acting_position_id"],
        row["action"],
        row["outcome"],
        row["unit_id"],
        row["unit_path"],
        row["detail"],
        row["prev_hash"],
    ]
    payload = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


async def _lock_head(conn: AsyncConnection) -> tuple[int, str]:
    q = select(audit_head.c.last_id, audit_head.c.last_hash).where(audit_head.c.id == 1)
    row = (await conn.execute(for_update(conn, q))).first()
    if row is None:  # the migration inserts it; a hand-made schema may not have
        await conn.execute(
            insert(audit_head).values(id=1, last_id=0, last_hash=GENESIS, pruned_through_id=0,
                                      pruned_through_hash=GENESIS)
        )  # fmt: skip
        return 0, GENESIS
    return int(row[0]), str(row[1])


async def record(conn: AsyncConnection, entry: AuditEntry, at: datetime) -> int:
    """Append one entry in the caller's transaction; returns its id."""
    return (await record_many(conn, [entry], at))[0]


async def record_many(conn: AsyncConnection, entries: Sequence[AuditEntry], at: datetime) -> list[int]:
    """Append entries in order in the caller's transaction (one head lock for all)."""
    if not entries:
        return []
    last_id, last_hash = await _lock_head(conn)
    rows: list[dict[str, Any]] = []
    for e in entries:
        last_id += 1
        row: dict[str, Any] = {
            "id": last_id,
            "at": at,
            "actor_person_id": e.actor_person_id,
            "acting_position_id": e.acting_position_id,
            "action": e.action,
            "outcome": e.outcome,
            "unit_id": e.unit_id,
            "unit_path": e.unit_path,
            "detail": _detail_text(e.detail),
            "prev_hash": last_hash,
        }
        row["hash"] = last_hash = entry_hash(row)
        rows.append(row)
    for i in range(0, len(rows), 500):
        await conn.execute(insert(audit_log), rows[i : i + 500])
    await conn.execute(update(audit_head).where(audit_head.c.id == 1).values(last_id=last_id, last_hash=last_hash))
    return [int(r["id"]) for r in rows]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    checked: int
    first_id: int
    last_id: int
    problem: str | None = None
    bad_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "checked": self.checked, "first_id": self.first_id, "last_id": self.last_id,
            "problem": self.problem, "bad_id": self.bad_id,
        }  # fmt: skip


async def verify(db: Database, *, batch: int = 2000) -> VerifyReport:
    """Walk the chain from the retention anchor to the head; the first break is reported."""
    async with db.read() as conn:
        head = (await conn.execute(select(audit_head).where(audit_head.c.id == 1))).first()
    if head is None:
        return VerifyReport(True, 0, 0, 0)
    expect_id, expect_prev = int(head.pruned_through_id) + 1, str(head.pruned_through_hash)
    checked = 0
    first = expect_id
    while True:
        async with db.read() as conn:
            rows = (
                await conn.execute(
                    select(audit_log).where(audit_log.c.id >= expect_id).order_by(audit_log.c.id).limit(batch)
                )
            ).all()
        for r in rows:
            m = dict(r._mapping)
            rid = int(m["id"])
            if rid != expect_id:
                return VerifyReport(False, checked, first, rid, f"entry {expect_id} is missing", expect_id)
            if m["prev_hash"] != expect_prev:
                return VerifyReport(False, checked, first, rid, "prev_hash does not match the entry before", rid)
            if entry_hash(m) != m["hash"]:
                return VerifyReport(False, checked, first, rid, "the entry was changed after it was written", rid)
            expect_id, expect_prev = rid + 1, str(m["hash"])
            checked += 1
        if len(rows) < batch:
            break
    last = expect_id - 1
    if last != int(head.last_id) or expect_prev != str(head.last_hash):
        return VerifyReport(False, checked, first, last, f"the log ends at {last} but the head names {head.last_id}",
                            last + 1)  # fmt: skip
    # A row hidden below the anchor (e.g. inserted with a low id) is also a break.
    async with db.read() as conn:
        below = (
            await conn.execute(select(func.count()).where(audit_log.c.id <= int(head.pruned_through_id)))
        ).scalar_one()
    if below:
        return VerifyReport(False, checked, first, last, "entries exist below the retention anchor", None)
    return VerifyReport(True, checked, first, last)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of an audit query; ``unit_prefixes`` are the subtrees the auditor may see (None: all)."""

    actor_person_id: int | None = None
    unit_prefix: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    before_id: int | None = None
    limit: int = 100
    unit_prefixes: tuple[str, ...] | None = None


def _row_dict(r: Any) -> dict[str, Any]:
    m = r._mapping
    return {
        "id": int(m["id"]),
        "at": _canonical_time(m["at"]),
        "actor_person_id": m["actor_person_id"],
        "acting_position_id": m["acting_position_id"],
        "action": m["action"],
        "outcome": m["outcome"],
        "unit_id": m["unit_id"],
        "unit_path": m["unit_path"],
        "detail": json.loads(m["detail"]),
        "hash": m["hash"],
    }


async def query(db: Database, q: AuditQuery) -> tuple[list[dict[str, Any]], int | None]:
    """Entries newest first; returns (entries, next ``before_id`` or None)."""
    t = audit_log
    stmt = select(t).order_by(t.c.id.desc()).limit(q.limit + 1)
    if q.actor_person_id is not None:
        stmt = stmt.where(t.c.actor_person_id == q.actor_person_id)
    if q.unit_prefix is not None:
        stmt = stmt.where(t.c.unit_path.startswith(q.unit_prefix, autoescape=True))
    if q.unit_prefixes is not None:
        from sqlalchemy import false, or_

        stmt = stmt.where(or_(false(), *[t.c.unit_path.startswith(p, autoescape=True) for p in q.unit_prefixes]))
    if q.since is not None:
        stmt = stmt.where(t.c.at >= q.since)
    if q.until is not None:
        stmt = stmt.where(t.c.at < q.until)
    if q.action is not None:
        stmt = stmt.where(t.c.action == q.action)
    if q.before_id is not None:
        stmt = stmt.where(t.c.id < q.before_id)
    async with db.read() as conn:
        rows = (await conn.execute(stmt)).all()
    items = [_row_dict(r) for r in rows[: q.limit]]
    return items, (items[-1]["id"] if len(rows) > q.limit and items else None)


async def prune(db: Database, before: datetime, now: datetime) -> int:
    """Delete entries older than ``before`` (a prefix of the chain) and move the anchor; records itself."""
    async with db.write() as conn:
        await _lock_head(conn)
        cut = (await conn.execute(select(func.max(audit_log.c.id)).where(audit_log.c.at < before))).scalar_one()
        if cut is None:
            return 0
        anchor = (await conn.execute(select(audit_log.c.hash).where(audit_log.c.id == int(cut)))).scalar_one()
        res = await conn.execute(delete(audit_log).where(audit_log.c.id <= int(cut)))
        await conn.execute(
            update(audit_head)
            .where(audit_head.c.id == 1)
            .values(pruned_through_id=int(cut), pruned_through_hash=anchor)
        )
        n = int(res.rowcount or 0)
        await record(
            conn,
            AuditEntry(
                "audit.pruned", detail={"deleted": n, "through_id": int(cut), "before": _canonical_time(before)}
            ),
            now,
        )
    return n
