"""The audit log: append-only, written in the transaction of the change it records, hash-chained by a sealer.

Why a chain: a row that records who changed the org, sent a notice or signed in
is worth something only if nobody can quietly edit, insert or delete one. Each
sealed entry has a dense chain position ``seq``, the hash of the entry before
it (``prev_hash``) and its own ``hash`` over every field (``seq`` and ``id``
included); ``audit_head`` holds the last sealed position and hash. So
``verify`` notices an edited row (its hash no longer matches), a deleted one (a
gap in ``seq``, and the next row's ``prev_hash`` no longer matches), an inserted
one (the chain forks) and a cut tail (the head names a later row). Pruning by
retention moves the chain's anchor forward (``pruned_through_*``) instead of
breaking it.

Why keyed (HMAC-SHA-256 under a key kept outside the database): with a plain
hash, whoever can write the database can edit a row and recompute every hash
after it and the head, and the chain verifies. The key comes from the settings
(``ZZD_AUDIT_KEY`` / ``_FILE``, or a file made beside the SQLite database), never
from the database; ``audit_head.key_check`` (an HMAC of a fixed text) lets a
process with another key refuse to seal rather than write a chain nobody can
verify. Revision 0019 re-sealed chains written before with the key.

Why the change's transaction only *inserts* the entry: an entry exists exactly
when its change committed, so it must be written there; but chaining it there
meant locking the head row until commit, which ran every audited write of every
process one at a time (docs/reliability.md: half the pool queued on the head at
40 items/s). So :func:`record` inserts the entry unsealed (``seq``, ``prev_hash``
and ``hash`` null; ``id`` from the table's own sequence, in no particular commit
order on PostgreSQL), and :func:`seal` chains what has committed since, in short
transactions of their own, one sealer at a time across processes (the head row
``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's one writer on SQLite).

Why sealing order is visibility order, not id order: sequence ids are taken at
insert, so on PostgreSQL id 7 may commit after id 8, or never (rolled back).
Sealing in id order would have to stop at every such gap and guess when to give
up on it; a late commit below a guessed-away gap could then never join the
chain. Instead each pass takes *every* committed unsealed entry (its statement's
snapshot), in id order, and gives them the next positions. An entry whose
transaction commits later is simply sealed by a later pass, a rolled-back one
leaves no hole (it never had a position), and the chain order keeps causality:
if a change committed before another began, it is visible to any snapshot that
sees the other, so it is sealed in the same pass or an earlier one, at a lower
``seq``.

Every process runs a :class:`Sealer` (woken after each commit that wrote an
entry, at most once per ``SEAL_GAP`` so that a busy process seals many commits
per pass instead of one, and polling each second), so entries are sealed
within moments of their commit while any process runs; ``zzd audit verify`` seals first, and
:func:`kernel.audit_verify.verify` lists entries still unsealed. An unsealed entry is not yet
tamper-evident: that window is what this design gives up for throughput.

Callers from every layer use :func:`record` with the connection they write
with; one call per change keeps the hook small.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.base import UTCDateTime, metadata
from kernel.db.database import Database, after_commit
from kernel.db.dialect import for_update
from kernel.db.types import ID
from kernel.waiting import wait_event

logger = logging.getLogger(__name__)

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditKeyMismatch",
    "AuditQuery",
    "Sealer",
    "audit_head",
    "audit_log",
    "canonical_time",
    "check_key",
    "entry_hash",
    "entry_payload",
    "entry_rows",
    "key_check",
    "prune",
    "seal_after_commit",
    "query",
    "record",
    "record_many",
    "seal",
]

#: ``prev_hash`` of the very first entry.
GENESIS = "0" * 64
#: Entries chained per sealing transaction (a backlog, e.g. a bulk import, takes several).
SEAL_BATCH = 1000
#: The sealer's safety poll: a wake-up lost (another process's commit, a busy pass) waits at most this.
SEAL_POLL = 1.0
#: Least time between two woken sealing passes: under load a pass per audited commit was
#: ~9 statements per notice or task, and one pass per this interval seals all of them.
SEAL_GAP = 0.1

audit_log = Table(
    "audit_log",
    metadata,
    # Monotonic, from the table's own sequence (AUTOINCREMENT on SQLite: never reused after pruning).
    Column("id", ID, primary_key=True, autoincrement=True),
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
    # " /a/…/x/ /b/…/y/": the actor's own units of a refused attempt, each after a space, so an auditor of
    # any of them finds it with a LIKE on " <subtree path>" (revision 0020); null for every other entry.
    Column("actor_unit_paths", Text, nullable=True),
    # Canonical JSON (sorted keys) of what the action was about.
    Column("detail", Text, nullable=False),
    # The chain, set by the sealer (null until then): dense position, previous entry's hash, own hash.
    Column("seq", ID, nullable=True),
    Column("prev_hash", String(64), nullable=True),
    Column("hash", String(64), nullable=True),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_actor", "actor_person_id"),
    Index("ix_audit_log_unit_path", "unit_path"),
    # Walks the chain; ``seq IS NULL`` finds the unsealed (NULLs are distinct in a unique index).
    Index("ux_audit_log_seq", "seq", unique=True),
    sqlite_autoincrement=True,
)

audit_head = Table(
    "audit_head",
    metadata,
    # Exactly one row (id = 1), locked by the sealer and by pruning, never by writers.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_seq", ID, nullable=False),
    Column("last_hash", String(64), nullable=False),
    # The newest entry removed by retention (0 / GENESIS before any pruning).
    Column("pruned_through_seq", ID, nullable=False),
    Column("pruned_through_hash", String(64), nullable=False),
    # :func:`key_check` of the key sealing this chain (null until the first seal): another key is refused.
    Column("key_check", String(64), nullable=True),
)


class AuditKeyMismatch(Exception):
    """This process's audit key is not the one the chain is sealed with: it must not seal (or prune)."""

    def __init__(self) -> None:
        super().__init__(
            "the audit key (ZZD_AUDIT_KEY, ZZD_AUDIT_KEY_FILE or the generated zzd-audit.key) is not the key "
            "this database's audit log is sealed with"
        )


def key_check(key: bytes) -> str:
    """A public check value of ``key`` (an HMAC of a fixed text): tells keys apart, reveals nothing of them."""
    return hmac.new(key, b"zzd audit key check", hashlib.sha256).hexdigest()


#: The sealers of this process, woken after a commit that wrote entries.
_bells: weakref.WeakSet[asyncio.Event] = weakref.WeakSet()


def _ring() -> None:
    for bell in list(_bells):
        bell.set()


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
    #: The actor's own units, as ``unit_path``s, for a refusal (``admin.denied``): their auditors see it too.
    actor_unit_paths: tuple[str, ...] = ()


def canonical_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _detail_text(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def entry_hash(row: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA-256 under ``key`` of :func:`entry_payload`: nobody without the key can compute one."""
    return hmac.new(key, entry_payload(row), hashlib.sha256).hexdigest()


def entry_payload(row: dict[str, Any]) -> bytes:
    """Every field of a sealed row as a JSON array (``at`` to the microsecond, UTC).

    The first field is the chain position ``seq``; the entry's ``id`` is appended
    when it differs from ``seq``. Entries chained before sealing existed had
    ``id == seq`` and were hashed without the extra field; and an ``id`` edited
    on any row changes the field list, so the hash covers it either way.
    """
    fields = [
        int(row["seq"]),
        canonical_time(row["at"]),
        row["actor_person_id"],
        row["acting_position_id"],
        row["action"],
        row["outcome"],
        row["unit_id"],
        row["unit_path"],
        row["detail"],
        row["prev_hash"],
    ]
    if int(row["id"]) != int(row["seq"]):
        fields.append(int(row["id"]))
    if row.get("actor_unit_paths") is not None:  # a string: never mistaken for the id above
        fields.append(row["actor_unit_paths"])
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def record(conn: AsyncConnection, entry: AuditEntry, at: datetime) -> int:
    """Insert one entry in the caller's transaction; returns its id. The sealer chains it after the commit."""
    return (await record_many(conn, [entry], at))[0]


async def record_many(conn: AsyncConnection, entries: Sequence[AuditEntry], at: datetime) -> list[int]:
    """Insert entries in order in the caller's transaction (unsealed; no lock beyond the rows themselves)."""
    if not entries:
        return []
    rows = entry_rows(entries, at)
    ids: list[int] = []
    for i in range(0, len(rows), 500):
        res = await conn.execute(insert(audit_log).returning(audit_log.c.id, sort_by_parameter_order=True),
                                 rows[i : i + 500])  # fmt: skip
        ids.extend(int(r[0]) for r in res)
    seal_after_commit(conn)
    return ids


def seal_after_commit(conn: AsyncConnection) -> None:
    """Wake this process's sealer once ``conn``'s transaction, which wrote entries, has committed."""
    after_commit(conn, _ring)


def entry_rows(entries: Sequence[AuditEntry], at: datetime) -> list[dict[str, Any]]:
    """The ``audit_log`` rows (unsealed) of ``entries``, for a writer that inserts them in a statement of its own.

    Such a writer calls :func:`seal_after_commit` on its connection.
    """
    return [
        {
            "at": at,
            "actor_person_id": e.actor_person_id,
            "acting_position_id": e.acting_position_id,
            "action": e.action,
            "outcome": e.outcome,
            "unit_id": e.unit_id,
            "unit_path": e.unit_path,
            "detail": _detail_text(e.detail),
            "actor_unit_paths": "".join(" " + p for p in e.actor_unit_paths) or None,
        }
        for e in entries
    ]


async def _head_for_sealing(conn: AsyncConnection, key: bytes, *, wait: bool) -> tuple[int, str] | None:
    """Lock the head for this transaction; None when another sealer holds it (``wait=False``).

    Raises:
        AuditKeyMismatch: the chain is sealed with another key (the first seal records this key's check).
    """
    check = key_check(key)
    q = select(audit_head.c.last_seq, audit_head.c.last_hash, audit_head.c.key_check).where(audit_head.c.id == 1)
    row = (await conn.execute(for_update(conn, q, skip_locked=not wait))).first()
    if row is not None:
        if row[2] is None:
            await conn.execute(update(audit_head).where(audit_head.c.id == 1).values(key_check=check))
        elif row[2] != check:
            raise AuditKeyMismatch
        return int(row[0]), str(row[1])
    if (await conn.execute(select(func.count()).select_from(audit_head))).scalar_one():
        return None  # it exists: another sealer has it
    # The migration inserts it; a hand-made schema may not have.
    await conn.execute(
        insert(audit_head).values(id=1, last_seq=0, last_hash=GENESIS, pruned_through_seq=0,
                                  pruned_through_hash=GENESIS, key_check=check)
    )  # fmt: skip
    return 0, GENESIS


async def check_key(db: Database, key: bytes) -> None:
    """Raise :class:`AuditKeyMismatch` if the chain is sealed with another key (a server checks at start)."""
    async with db.read() as conn:
        found = (await conn.execute(select(audit_head.c.key_check).where(audit_head.c.id == 1))).scalar()
    if found is not None and found != key_check(key):
        raise AuditKeyMismatch


_SEAL_ROW = (
    update(audit_log)
    .where(audit_log.c.id == bindparam("b_id"))
    .values(seq=bindparam("b_seq"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash"))
)


async def _seal_batch(conn: AsyncConnection, key: bytes, last_seq: int, last_hash: str) -> tuple[int, str, int]:
    """Chain the next committed unsealed entries after (last_seq, last_hash); returns the new head and count."""
    rows = (
        await conn.execute(select(audit_log).where(audit_log.c.seq.is_(None)).order_by(audit_log.c.id)
                           .limit(SEAL_BATCH))
    ).all()  # fmt: skip
    params: list[dict[str, Any]] = []
    for r in rows:
        m = dict(r._mapping)
        last_seq += 1
        m["seq"], m["prev_hash"] = last_seq, last_hash
        last_hash = entry_hash(m, key)
        params.append({"b_id": m["id"], "b_seq": last_seq, "b_prev": m["prev_hash"], "b_hash": last_hash})
    if params:
        await conn.execute(_SEAL_ROW, params)
        await conn.execute(
            update(audit_head).where(audit_head.c.id == 1).values(last_seq=last_seq, last_hash=last_hash)
        )
    return last_seq, last_hash, len(params)


async def seal(db: Database, key: bytes, *, wait: bool = False) -> int | None:
    """Chain every entry committed so far under ``key``; returns how many were sealed, None if another sealer
    was at work. Raises :class:`AuditKeyMismatch` if the chain is sealed with another key.

    ``wait``: queue for the head instead (a caller that needs everything sealed
    now, e.g. ``zzd audit verify``). Each batch is its own short transaction.
    """
    async with db.read() as conn:  # nothing to do is the common case of a poll: no write transaction for it
        if (await conn.execute(select(audit_log.c.id).where(audit_log.c.seq.is_(None)).limit(1))).first() is None:
            return 0
    total = 0
    while True:
        async with db.write() as conn:
            head = await _head_for_sealing(conn, key, wait=wait)
            if head is None:
                return None if total == 0 else total
            _, _, n = await _seal_batch(conn, key, *head)
        total += n
        if n < SEAL_BATCH:
            return total


class Sealer:
    """This process's sealer: a pass after each commit that wrote entries, and every ``SEAL_POLL`` seconds.

    When another process's sealer holds the head, this one tries again shortly
    (that pass may have started before our entries committed).
    """

    def __init__(self, db: Database, key: bytes, *, poll: float = SEAL_POLL, busy_retry: float = 0.05) -> None:
        self.db = db
        self.key = key
        self.poll = poll
        self.busy_retry = busy_retry
        self.bell = asyncio.Event()
        self.sealed = 0
        self.busy = 0
        self._stopping = False
        _bells.add(self.bell)

    async def run_once(self) -> int:
        """Seal until done or the head is busy elsewhere; returns entries sealed by this pass."""
        n = await seal(self.db, self.key)
        if n is None:
            self.busy += 1
            loop = asyncio.get_running_loop()
            loop.call_later(self.busy_retry, self.bell.set)
            return 0
        self.sealed += n
        return n

    async def run(self) -> None:
        """Until cancelled or :meth:`stop` (for callers without a ``Jobs``, which does the same)."""
        while True:
            await wait_event(self.bell, self.poll)
            self.bell.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except AuditKeyMismatch as exc:  # entries stay unsealed (verify lists them) until the key is fixed
                logger.error("audit sealing refused: %s", exc)
            except Exception as exc:
                logger.warning("audit sealing failed: %r", exc)
            if self._stopping:
                return

    async def flush(self, timeout: float = 2.0) -> None:
        """One last pass at shutdown, bounded: what is left is sealed by the next sealer or ``zzd audit verify``."""
        try:
            await asyncio.wait_for(self.run_once(), timeout)
        except Exception as exc:  # a stopping process must not hang on a database that is gone
            logger.warning("audit sealing at shutdown failed: %r", exc)

    def stop(self) -> None:
        """Make :meth:`run` return after one more pass (its counts are then final)."""
        self._stopping = True
        self.bell.set()


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
        "at": canonical_time(m["at"]),
        "actor_person_id": m["actor_person_id"],
        "acting_position_id": m["acting_position_id"],
        "action": m["action"],
        "outcome": m["outcome"],
        "unit_id": m["unit_id"],
        "unit_path": m["unit_path"],
        "detail": json.loads(m["detail"]),
        "seq": m["seq"],
        "hash": m["hash"],
    }


def _in_subtree(prefix: str) -> ColumnElement[bool]:
    """Entries about the subtree ``prefix`` names: their unit is in it, or (a refusal) one of the actor's units."""
    t = audit_log
    return or_(t.c.unit_path.startswith(prefix, autoescape=True),
               t.c.actor_unit_paths.contains(" " + prefix, autoescape=True))  # fmt: skip


async def query(db: Database, q: AuditQuery) -> tuple[list[dict[str, Any]], int | None]:
    """Entries newest first; returns (entries, next ``before_id`` or None)."""
    t = audit_log
    stmt = select(t).order_by(t.c.id.desc()).limit(q.limit + 1)
    if q.actor_person_id is not None:
        stmt = stmt.where(t.c.actor_person_id == q.actor_person_id)
    if q.unit_prefix is not None:
        stmt = stmt.where(_in_subtree(q.unit_prefix))
    if q.unit_prefixes is not None:
        stmt = stmt.where(or_(false(), *[_in_subtree(p) for p in q.unit_prefixes]))
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


async def prune(db: Database, key: bytes, before: datetime, now: datetime) -> int:
    """Delete sealed entries older than ``before`` (a prefix of the chain) and move the anchor; records itself.

    Unsealed entries are never pruned (they are not in the chain yet); the
    sealer waits for this transaction, which holds the head.
    """
    async with db.write() as conn:
        await _head_for_sealing(conn, key, wait=True)
        t = audit_log
        cut = (await conn.execute(select(func.max(t.c.seq)).where(t.c.at < before, t.c.seq.is_not(None)))).scalar_one()
        if cut is None:
            return 0
        anchor = (await conn.execute(select(t.c.hash).where(t.c.seq == int(cut)))).scalar_one()
        res = await conn.execute(delete(t).where(t.c.seq <= int(cut)))
        await conn.execute(
            update(audit_head)
            .where(audit_head.c.id == 1)
            .values(pruned_through_seq=int(cut), pruned_through_hash=anchor)
        )
        n = int(res.rowcount or 0)
        await record(
            conn,
            AuditEntry(
                "audit.pruned", detail={"deleted": n, "through_seq": int(cut), "before": canonical_time(before)}
            ),
            now,
        )
    return n
