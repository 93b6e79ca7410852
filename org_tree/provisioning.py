"""Bulk provisioning: persons and who sits where, from a CSV, all or nothing.

Why not ``zzd person create`` in a loop: each call started a process and
hashed an operator-chosen password (5–9 s each; 300 logins took 20 minutes).
Here the file is checked completely first (every bad line reported with its
number, nothing written), then everything is written in one transaction with
one org version bump, bulk inserts, and one audit entry per person. New
persons get a one-time activation code (only its SHA-256 is stored) with
which they choose their own password (``POST /api/v1/auth/activate``), so no
password is hashed at import and none is known to the operator.

The file (UTF-8, header row)::

    login,name,phone,positions
    lisi,李四,13800000000,330802001001:village_secretary;330802001001001:grid_worker:deputy

``positions``: ``unit code:role[:kind]`` separated by ``;`` (role by key or
name; kind ``primary`` (default), ``deputy`` or ``acting``). Idempotent: a
second run of the same file changes nothing; a listed person is updated
(name, phone) and seated where they are not yet; positions not listed are
left alone.
"""

from __future__ import annotations

import csv
import io
import logging
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.audit import AuditEntry, record_many
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import reserve_ids
from kernel.errors import BadRequest, NotFound
from kernel.schema import activation_codes, persons
from kernel.text import check_text, normalize_name
from org_tree.bulk import bulk_insert
from org_tree.grants import unit_path_of
from org_tree.index import OrgIndex
from org_tree.org_schema import assignments
from org_tree.people import code_digest, normalize_login
from org_tree.structure import OrgHooks
from org_tree.versioning import bump_version

logger = logging.getLogger(__name__)

__all__ = ["ImportPlan", "ImportProblem", "ImportResult", "apply_plan", "plan_import"]

KINDS = ("primary", "deputy", "acting")
COLUMNS = ("login", "name", "phone", "positions")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class ImportProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class Row:
    line: int
    login: str
    name: str
    phone: str | None
    seats: list[tuple[int, str]]  # (position id, kind)
    person_id: int | None = None
    changed: bool = False


@dataclass
class ImportPlan:
    rows: list[Row]
    problems: list[ImportProblem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int
    assigned: int
    handed_over: int
    #: (login, one-time code) of each new person: shown once, stored only as a hash.
    codes: list[tuple[str, str]]
    expires_at: datetime


def _phone(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    digits = raw.removeprefix("+")
    bare = digits.replace("-", "").replace(" ", "")
    if not (bare.isascii() and bare.isdigit()):
        raise BadRequest("phone must be digits (with + - or spaces)", data={"field": "phone"})
    if len(raw) > 32:
        raise BadRequest("phone is longer than 32 characters", data={"field": "phone"})
    return raw


def _seats(index: OrgIndex, raw: str, reserved_roles: Collection[str]) -> list[tuple[int, str]]:
    seats: list[tuple[int, str]] = []
    for part in (p.strip() for p in raw.split(";")):
        if not part:
            continue
        bits = part.split(":")
        if len(bits) not in (2, 3):
            raise BadRequest(f"position {part!r} must be unit code:role[:kind]")
        code, role = bits[0].strip(), bits[1].strip()
        kind = bits[2].strip() if len(bits) == 3 else "primary"
        if kind not in KINDS:
            raise BadRequest(f"kind {kind!r} must be one of {', '.join(KINDS)}")
        try:
            u = index.unit(code)
            rid = index.role_id(role)
        except NotFound as exc:
            raise BadRequest(f"{part!r}: {exc.message}") from exc
        slots = [k for k in index.unit_slots(u) if index.position_role_id(k) == rid]
        if not slots:
            raise BadRequest(f"{part!r}: the unit has no position of that role")
        if (key := index.position_role(slots[0]).key) in reserved_roles:
            raise BadRequest(
                f"{part!r}: a position of role {key} is held by what it was made for: nobody is seated in it"
            )
        seats.append((index.position_id(slots[0]), kind))
    return seats


def plan_import(
    index: OrgIndex, text_in: str, progress: Progress | None = None, *, reserved_roles: Collection[str] = ()
) -> ImportPlan:
    """Parse and check every line against the tree; nothing touches the database.

    ``reserved_roles``: role keys nobody is seated in (``OrgService.reserve_role``: an app's bot
    position is the app). The file is the operator's, but the rule is the same as through the API:
    a line seating someone as an app's bot would let them send as the app (江西 audit's leftover).
    """
    reader = csv.DictReader(io.StringIO(text_in.lstrip("\ufeff")))
    plan = ImportPlan([])
    if reader.fieldnames is None or [f.strip() for f in reader.fieldnames][:4] != list(COLUMNS):
        plan.problems.append(ImportProblem(1, f"the header must be {','.join(COLUMNS)}"))
        return plan
    lines = list(reader)
    seen: dict[str, int] = {}
    for i, rec in enumerate(lines):
        line = i + 2
        try:
            if None in rec or any(v is None for v in rec.values()):
                raise BadRequest(f"expected {len(COLUMNS)} columns")
            login = normalize_login(rec["login"])
            name = normalize_name(check_text(rec["name"], field="name", max_chars=100))
            row = Row(line, login, name, _phone(rec["phone"]), _seats(index, rec["positions"], reserved_roles))
            if login in seen:
                raise BadRequest(f"login {login!r} is also on line {seen[login]}")
            seen[login] = line
            plan.rows.append(row)
        except BadRequest as exc:
            plan.problems.append(ImportProblem(line, exc.message))
        if progress is not None and (i % 500 == 0 or i == len(lines) - 1):
            progress("check", i + 1, len(lines))
    return plan


async def apply_plan(
    db: Database,
    clock: Clock,
    index: OrgIndex,
    plan: ImportPlan,
    *,
    replace_holders: bool = False,
    code_days: int = 14,
    progress: Progress | None = None,
    hooks: OrgHooks | None = None,
) -> ImportResult:
    """Write a checked plan in one transaction (raises ``BadRequest`` listing problems; nothing is written then).

    Args:
        hooks: the server's (``Services.org.hooks``): a position handed over (``replace_holders``) passes
            the unread notices owed through it to the new holder in this transaction, as the API's
            handover does, and whoever was seated or replaced gets ``positions.changed`` — for an import
            of up to a thousand positions (beyond, readers rebuild, as after a division import, and none
            is sent). Without them (org-only use) nothing else follows.
    """
    if plan.problems:
        raise BadRequest(
            "the file has problems; nothing was written", data={"problems": [str(p) for p in plan.problems]}
        )
    now = clock.now()
    expires = now + timedelta(days=code_days)
    codes: list[tuple[str, str]] = []
    entries: list[AuditEntry] = []
    created = updated = unchanged = assigned = handed = 0
    handovers: list[tuple[int, list[int], int]] = []  # position, its primary holders before, the new one
    seats: dict[int, tuple[list[int], list[int]]] = {}  # person: (positions gained, positions lost)
    after: list[Callable[[], None]] = []
    async with db.write() as conn:
        touched = sorted({pid for r in plan.rows for pid, _ in r.seats})
        # Readers patch a few positions' holders; past a thousand, a rebuild is cheaper.
        many = len(touched) > 1000
        await bump_version(
            conn, clock, scope="tree" if many else "holders", position_ids=() if many else touched, detail="import"
        )
        existing = {}
        logins = [r.login for r in plan.rows]
        for i in range(0, len(logins), 500):
            q = select(persons.c.id, persons.c.login, persons.c.name, persons.c.phone, persons.c.disabled).where(
                persons.c.login.in_(logins[i : i + 500])
            )
            existing.update({str(r.login): r for r in await conn.execute(q)})
        new_rows = [r for r in plan.rows if r.login not in existing]
        ids = await reserve_ids(conn, "persons", len(new_rows))
        person_rows = []
        code_rows = []
        for r, pid in zip(new_rows, ids, strict=True):
            r.person_id = pid
            code = secrets.token_urlsafe(12)
            codes.append((r.login, code))
            person_rows.append((pid, r.login, r.name, None, False, now, r.phone))
            code_rows.append((pid, code_digest(code), now, expires, None))
        await bulk_insert(
            conn, persons, ["id", "login", "name", "password_hash", "disabled", "created_at", "phone"], person_rows
        )
        await bulk_insert(
            conn, activation_codes, ["person_id", "code_hash", "created_at", "expires_at", "used_at"], code_rows
        )
        created = len(new_rows)
        for r in plan.rows:
            old = existing.get(r.login)
            if old is None:
                continue
            r.person_id = int(old.id)
            if (old.name, old.phone) != (r.name, r.phone):
                await conn.execute(
                    update(persons).where(persons.c.id == r.person_id).values(name=r.name, phone=r.phone)
                )
                r.changed = True
                updated += 1
        current = await _current(conn, touched)
        asg_rows = []
        asg_ids = await reserve_ids(conn, "assignments", sum(len(r.seats) for r in plan.rows))
        next_asg = iter(asg_ids)
        for n, r in enumerate(plan.rows):
            assert r.person_id is not None
            for pos, kind in r.seats:
                holders = current.setdefault(pos, {})
                if r.person_id in holders:
                    continue
                if (old := existing.get(r.login)) is not None and old.disabled:  # as a handover refuses them
                    raise BadRequest(
                        "the file has problems; nothing was written",
                        data={"problems": [f"line {r.line}: {r.login!r} is disabled "
                                           f"(zzd person disable --login {r.login} --enable)"]},
                    )  # fmt: skip
                k = index.slot(pos)
                single = not index.position_role(k).pool
                others = [p for p, kd in holders.items() if kd == "primary"]
                if kind == "primary" and single and others:
                    if not replace_holders:
                        raise BadRequest(
                            "the file has problems; nothing was written",
                            data={"problems": [f"line {r.line}: position {pos} is held by another person "
                                               "(--replace-holders hands it over)"]},
                        )  # fmt: skip
                    await conn.execute(
                        update(assignments)
                        .where(assignments.c.position_id == pos, assignments.c.end_at.is_(None))
                        .where(assignments.c.kind == "primary")
                        .values(end_at=now)
                    )
                    for p in others:
                        holders.pop(p)
                        seats.setdefault(p, ([], []))[1].append(pos)
                    handed += 1
                    handovers.append((pos, sorted(others), r.person_id))
                holders[r.person_id] = kind
                seats.setdefault(r.person_id, ([], []))[0].append(pos)
                asg_rows.append((next(next_asg), r.person_id, pos, kind, now, None))
                r.changed = True
            if progress is not None and (n % 500 == 0 or n == len(plan.rows) - 1):
                progress("write", n + 1, len(plan.rows))
        await bulk_insert(conn, assignments, ["id", "person_id", "position_id", "kind", "start_at", "end_at"], asg_rows)
        assigned = len(asg_rows)
        for pos, others, to in handovers:
            # Until 2026-12-05 the import left them owed by the holder it replaced (广西 audit).
            if hooks is not None:
                after += (await hooks.handed_over(conn, pos, others, to, now))[1]
        if hooks is not None and not many:
            # Until 2026-12-05 nobody was told: a replaced holder's client went on offering the seat (广西 audit).
            after += await hooks.holders_changed(conn, seats, now)
        new_ids = {r.person_id for r in new_rows}
        for r in plan.rows:
            if r.person_id in new_ids or r.changed:
                entries.append(_entry(index, r, "person.created" if r.person_id in new_ids else "person.updated"))
            else:
                unchanged += 1
        await record_many(conn, entries, now)
    for done in after:
        done()
    return ImportResult(created, updated, unchanged, assigned, handed, codes, expires)


def _entry(index: OrgIndex, r: Row, action: str) -> AuditEntry:
    u = index.position_unit(index.slot(r.seats[0][0])) if r.seats else None
    unit_id, path = unit_path_of(index, u)
    detail = {"login": r.login, "person_id": r.person_id, "positions": [p for p, _ in r.seats], "via": "import"}
    return AuditEntry(action, None, None, "ok", unit_id, path, detail)


async def _current(conn: AsyncConnection, position_ids: list[int]) -> dict[int, dict[int, str]]:
    out: dict[int, dict[int, str]] = {}
    for i in range(0, len(position_ids), 500):
        rows = await conn.execute(
            select(assignments.c.position_id, assignments.c.person_id, assignments.c.kind).where(
                assignments.c.position_id.in_(position_ids[i : i + 500]), assignments.c.end_at.is_(None)
            )
        )
        for pos, person, kind in rows:
            out.setdefault(int(pos), {})[int(person)] = str(kind)
    return out
