"""``verify``: walk the audit log's keyed hash chain and name its first break (docs/admin.md "The audit log").

Apart from kernel/audit.py, which writes and seals the chain, so that each stays a readable size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from kernel.audit import audit_head, audit_log, canonical_time, entry_hash, key_check
from kernel.db.database import Database

__all__ = ["WRONG_KEY", "VerifyReport", "verify"]

#: The problem named when the chain was sealed with a key other than the one given.
WRONG_KEY = "the audit key is not the one this log was sealed with: nothing can be checked with it"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify`` found: the chain's first break if any, and the entries not sealed yet.

    ``first_seq``/``last_seq`` span the sealed chain checked and ``last_hash`` is the
    hash at ``last_seq`` (the pair to keep elsewhere, for ``expect`` later); ``bad_seq``
    is the chain position of the break and ``bad_id`` the id of the entry there (None
    when the row is missing). Unsealed entries are not a break: they are listed
    (``unsealed`` counts them, ``unsealed_ids`` names the oldest 100,
    ``oldest_unsealed_at`` says since when) so an operator sees a stalled sealer.
    """

    ok: bool
    checked: int
    first_seq: int
    last_seq: int
    problem: str | None = None
    bad_seq: int | None = None
    bad_id: int | None = None
    unsealed: int = 0
    unsealed_ids: tuple[int, ...] = ()
    oldest_unsealed_at: str | None = None
    last_hash: str | None = None
    #: ``expect`` given: "matched", or "pruned" (its entry is gone by retention: it could not be checked).
    expected: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "checked": self.checked, "first_seq": self.first_seq, "last_seq": self.last_seq,
            "problem": self.problem, "bad_seq": self.bad_seq, "bad_id": self.bad_id, "unsealed": self.unsealed,
            "unsealed_ids": list(self.unsealed_ids), "oldest_unsealed_at": self.oldest_unsealed_at,
            "last_hash": self.last_hash, "expected": self.expected,
        }  # fmt: skip


async def _unsealed(db: Database) -> tuple[int, tuple[int, ...], str | None]:
    async with db.read() as conn:
        n = (await conn.execute(select(func.count()).where(audit_log.c.seq.is_(None)))).scalar_one()
        rows = (
            await conn.execute(select(audit_log.c.id, audit_log.c.at).where(audit_log.c.seq.is_(None))
                               .order_by(audit_log.c.id).limit(100))
        ).all()  # fmt: skip
    oldest = min((r[1] for r in rows), default=None)
    return int(n), tuple(int(r[0]) for r in rows), (canonical_time(oldest) if oldest is not None else None)


async def _head(db: Database) -> Any:
    async with db.read() as conn:
        return (await conn.execute(select(audit_head).where(audit_head.c.id == 1))).first()


async def verify(db: Database, key: bytes, *, expect: tuple[int, str] | None = None, batch: int = 2000) -> VerifyReport:
    """Walk the sealed chain from the retention anchor to the head under ``key``; the first break is reported.

    ``expect``: a ``(last_seq, last_hash)`` an earlier verify printed and the operator kept
    off the machine. The key cannot stop a database writer from deleting the newest entries
    and putting back an earlier head (every value was valid once); the kept pair can: the
    chain must still hold that position with that hash, else it is a break. A pair whose
    entry retention has pruned since cannot be checked (``expected: "pruned"``), unless it is
    the retention anchor itself, whose hash the head keeps.

    A chain sealed with another key (``audit_head.key_check``) is reported as
    such at once: every hash would differ, and saying "changed" would mislead.

    Sealers may run meanwhile: after the walk, the head and the newest sealed
    position are read in one statement (a seal commits its rows and the head
    together, so they agree unless someone cut or appended rows by hand), and
    the walk goes on while the head is past what it has seen.
    """
    anchor = await _head(db)
    unsealed = await _unsealed(db)
    if anchor is None:
        if expect is not None:  # nothing sealed at all, yet a verify once reached a position
            cut = f"the log is empty but a kept verify reached {expect[0]}: entries were cut"
            return VerifyReport(False, 0, 0, 0, cut, 1, None, *unsealed)
        return VerifyReport(True, 0, 0, 0, None, None, None, *unsealed)
    expect_seq, expect_prev = int(anchor.pruned_through_seq) + 1, str(anchor.pruned_through_hash)
    checked = 0
    first = expect_seq
    if anchor.key_check is not None and anchor.key_check != key_check(key):
        return VerifyReport(False, 0, first, first - 1, WRONG_KEY, None, None, *unsealed)

    def broken(last: int, problem: str, bad_seq: int | None, bad_id: int | None) -> VerifyReport:
        return VerifyReport(False, checked, first, last, problem, bad_seq, bad_id, *unsealed)

    expected: str | None = None
    if expect is not None and expect[0] <= int(anchor.pruned_through_seq):
        if expect[0] < int(anchor.pruned_through_seq):
            expected = "pruned"
        elif expect[1] != str(anchor.pruned_through_hash):
            return broken(first - 1, f"the kept entry {expect[0]} has another hash now", expect[0], None)
        else:
            expected = "matched"

    while True:
        while True:
            async with db.read() as conn:
                rows = (
                    await conn.execute(
                        select(audit_log).where(audit_log.c.seq >= expect_seq).order_by(audit_log.c.seq).limit(batch)
                    )
                ).all()
            for r in rows:
                m = dict(r._mapping)
                seq, rid = int(m["seq"]), int(m["id"])
                if seq != expect_seq:
                    return broken(seq, f"entry {expect_seq} is missing", expect_seq, None)
                if m["prev_hash"] != expect_prev:
                    return broken(seq, "prev_hash does not match the entry before", seq, rid)
                if m["hash"] is None or entry_hash(m, key) != m["hash"]:
                    return broken(seq, "the entry was changed after it was written", seq, rid)
                if expect is not None and seq == expect[0]:
                    if m["hash"] != expect[1]:
                        return broken(seq, f"the kept entry {seq} has another hash now", seq, rid)
                    expected = "matched"
                expect_seq, expect_prev = seq + 1, str(m["hash"])
                checked += 1
            if len(rows) < batch:
                break
        # The head and the newest position in one statement (one snapshot on both backends).
        newest = select(func.max(audit_log.c.seq)).scalar_subquery()
        async with db.read() as conn:
            h_seq, h_hash, h_pruned, top = (
                await conn.execute(
                    select(
                        audit_head.c.last_seq, audit_head.c.last_hash, audit_head.c.pruned_through_seq, newest
                    ).where(audit_head.c.id == 1)
                )
            ).one()
        # Everything sealed may have been pruned: the chain then ends at the anchor.
        h_seq, top, last = int(h_seq), int(h_pruned if top is None else top), expect_seq - 1
        if top != h_seq or last > h_seq:
            end = max(top, last)
            return broken(end, f"the log ends at {end} but the head names {h_seq}", min(end, h_seq) + 1, None)
        if last < h_seq:
            continue  # sealed after the walk read past them: walk on from here
        if expect_prev != str(h_hash):
            return broken(last, "the head's hash does not match the last entry", last, None)
        break
    # A row hidden below the anchor (e.g. inserted with a low position) is also a break.
    async with db.read() as conn:
        below = (
            await conn.execute(select(func.count()).where(audit_log.c.seq <= int(anchor.pruned_through_seq)))
        ).scalar_one()
    if below:
        return broken(last, "entries exist below the retention anchor", None, None)
    if expect is not None and expected is None:  # the chain ends before the kept position
        return broken(
            last, f"the log ends at {last} but a kept verify reached {expect[0]}: entries were cut", last + 1, None
        )
    return VerifyReport(
        True, checked, first, last, None, None, None, *unsealed, last_hash=expect_prev, expected=expected
    )
