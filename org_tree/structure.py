"""Structural edits of the org: units, positions and roles, as administrators make them.

Why here and how: each edit checks the caller's admin grant over what it
touches (a refusal is audited), then in **one transaction** takes the
``org_version`` row lock first (``bump_version(scope="struct")``), changes the
rows, appends the edit to the org change log as JSON (``append_change``; the
entries ``org_tree.holder`` replays in every process, see ``apply_op``), tells
the work-in-flight hooks (``OrgHooks``: open tasks of a retired position go to
its successor, tasks of a moved position change unit) and writes the audit
entry. Rows are never deleted: a retired unit is ``dissolved_at``, a retired
position ``removed_at``, so history (assignments, threads, tasks) stays.

After the commit this process refreshes its index before answering, so a
caller sees its own edit at once; other processes within their refresh
interval (0.5 s by default, and at once on a broker hint).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.audit import record
from kernel.errors import BadRequest, Conflict, ErrorCode
from kernel.text import check_text, normalize_name
from org_tree.divisions import Level
from org_tree.grants import Perm
from org_tree.index import OrgIndex
from org_tree.jurisdiction import Actor, access_unit
from org_tree.org_schema import assignments, org_changes, positions, roles, units
from org_tree.roles import JURISDICTION_RULES, ROLE_NAME_RULE
from org_tree.selectors import is_role_word, is_unit_code
from org_tree.versioning import append_change, bump_version

if TYPE_CHECKING:
    from org_tree.org_service import OrgService

logger = logging.getLogger(__name__)

__all__ = [
    "TELL_HOLDERS_UP_TO",
    "HandedHook",
    "HoldersHook",
    "OrgHooks",
    "Structure",
    "UnitsHook",
    "checked_fresh",
    "refuse_stale",
    "successors",
]

#: A rename, move or merge tells the holders of the positions it re-labels (``positions.changed``, in its own
#: transaction) when they are at most this many positions, as ``zzd person import`` does; above it (a county,
#: a city), none is sent and clients read the new names at their next ``GET /api/v1/me/positions``: the event
#: rows of tens of thousands of holders would hold the edit's ``org_version`` lock, and with it every other
#: org change, for seconds (docs/admin.md "Who is told").
TELL_HOLDERS_UP_TO = 1000

#: ``(conn, {retired position id: successor position id}, now, actor person id)``: runs in the edit's
#: transaction; may return what to run after the commit (wake-ups).
RetiredHook = Callable[
    [AsyncConnection, dict[int, int | None], datetime, int | None], Awaitable[Callable[[], None] | None]
]
#: ``(conn, {moved position id: its new unit id}, now)``: runs in the edit's transaction.
MovedHook = Callable[[AsyncConnection, dict[int, int], datetime], Awaitable[None]]
#: ``(conn, person ids, now)``: a unit above positions these persons hold was renamed, moved or merged in this
#: transaction (their seats are the same; what the positions read as, their unit path or unit, changed); may
#: return what to run after the commit (wake-ups).
UnitsHook = Callable[[AsyncConnection, list[int], datetime], Awaitable[Callable[[], None] | None]]
#: ``(conn, {person id: (position ids gained, position ids lost)}, now)``: who holds what changed (an
#: assignment started or ended, a handover, a retirement); runs in the change's transaction; may return
#: what to run after the commit (wake-ups).
HoldersHook = Callable[
    [AsyncConnection, dict[int, tuple[list[int], list[int]]], datetime], Awaitable[Callable[[], None] | None]
]
#: ``(conn, position id, its primary holders before, the new holder, now)``: a handover, in its transaction;
#: returns how many unread notices passed to the new holder and what to run after the commit (wake-ups).
HandedHook = Callable[
    [AsyncConnection, int, list[int], int, datetime], Awaitable[tuple[int, Callable[[], None] | None]]
]
#: ``(conn, position ids, unit ids)`` → counts for a preview (``{"open_tasks": 3}``).
ImpactHook = Callable[[AsyncConnection, list[int], list[int]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class OrgHooks:
    """Work in flight that follows a structural edit: messaging's, given to ``OrgService`` at construction
    by the composition root (``zzd/services.py``); none in org-only use (the CLI's import, the benches)."""

    retired: Sequence[RetiredHook] = ()
    moved: Sequence[MovedHook] = ()
    impact: Sequence[ImpactHook] = ()
    holders: Sequence[HoldersHook] = ()
    handed: Sequence[HandedHook] = ()
    units: Sequence[UnitsHook] = ()

    async def units_changed(self, conn: AsyncConnection, persons: list[int], now: datetime) -> list[Callable[[], None]]:
        """Tell the hooks whose positions read differently now (a unit above them renamed, moved or merged)."""
        return await _in_turn([functools.partial(hook, conn, persons, now) for hook in self.units] if persons else [])

    async def handed_over(
        self, conn: AsyncConnection, position_id: int, previous: list[int], to_person_id: int, now: datetime
    ) -> tuple[int, list[Callable[[], None]]]:
        """Pass what the previous holders still owe through the position (unread notices) to the new one.

        Why in the handover's transaction: after its commit, the previous holders it read could already
        be stale (another handover of the position committed meanwhile) and the notices went to someone
        who no longer held the position, or stayed with the predecessor when the process stopped between.
        """
        moved, after = 0, []
        for hook in self.handed:
            n, done = await hook(conn, position_id, previous, to_person_id, now)
            moved += n
            if done is not None:
                after.append(done)
        return moved, after

    async def holders_changed(
        self, conn: AsyncConnection, changes: dict[int, tuple[list[int], list[int]]], now: datetime
    ) -> list[Callable[[], None]]:
        """Tell the hooks whose seats changed (persons with nothing gained or lost are left out)."""
        changes = {p: (sorted(g), sorted(lo)) for p, (g, lo) in changes.items() if g or lo}
        return await _in_turn([functools.partial(hook, conn, changes, now) for hook in self.holders] if changes else [])

    async def positions_retired(self, conn: AsyncConnection, moves: dict[int, int | None], now: datetime,
                                actor: int | None) -> list[Callable[[], None]]:  # fmt: skip
        return await _in_turn([functools.partial(hook, conn, moves, now, actor) for hook in self.retired])

    async def counts(self, conn: AsyncConnection, position_ids: list[int], unit_ids: list[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for hook in self.impact:
            out.update(await hook(conn, position_ids, unit_ids))
        return out

    async def positions_moved(self, conn: AsyncConnection, moves: dict[int, int], now: datetime) -> None:
        for hook in self.moved:
            await hook(conn, moves, now)


async def _in_turn(calls: Sequence[Callable[[], Awaitable[Callable[[], None] | None]]]) -> list[Callable[[], None]]:
    """Run hooks one after another (they share the edit's connection): what each gave to run after the commit."""
    after = []
    for call in calls:
        done = await call()
        if done is not None:
            after.append(done)
    return after


#: The audit action of each edit a preview shows (its refusal is filed under the edit's name).
_EDIT_ACTIONS = {"move": "org.unit_moved", "merge": "org.units_merged", "retire": "org.unit_retired"}


def successors(
    index: OrgIndex, retired: Sequence[int], gone_units: set[int], named: int | None
) -> dict[int, int | None]:
    """Who takes over each retired position: the named one, else the same role in the nearest
    surviving unit above, else the head of the nearest surviving unit above (None: nobody)."""
    out: dict[int, int | None] = {}
    retired_set = set(retired)
    for pid in retired:
        if named is not None:
            out[pid] = named
            continue
        k = index.find_slot(pid)
        found: int | None = None
        if k >= 0:
            role = index.position_role_id(k)
            above = [a for a in index.ancestors(index.position_unit(k)) if a not in gone_units]
            for a in above:
                j = index.role_slot(a, role)
                if j >= 0 and index.position_id(j) not in retired_set:
                    found = index.position_id(j)
                    break
            if found is None:
                for a in above:
                    h = index.head_slot(a)
                    if h >= 0 and index.position_id(h) not in retired_set:
                        found = index.position_id(h)
                        break
        out[pid] = found
    return out


#: The index version an org edit was checked against (set per try by ``checked_fresh``).
_CHECKED_AT: ContextVar[int | None] = ContextVar("org_edit_checked_at", default=None)
#: Tries of one edit whose checks a concurrent structural change made stale.
_EDIT_TRIES = 3

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Fresh(Protocol):
    """What ``checked_fresh`` needs of the object whose edits it runs: the index the checks read, and a
    way to bring it up to what has committed (``Structure``, ``OrgService``)."""

    @property
    def index(self) -> OrgIndex: ...

    async def refresh(self) -> bool: ...


_S = TypeVar("_S", bound=_Fresh)


class _Stale(Exception):
    """A structural change committed after this edit was checked against the index and before it took
    the version lock: the edit's checks (is the unit still there, where is it) may no longer hold."""


def checked_fresh(
    edit: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Run an org edit whose checks hold when it commits: again, on the refreshed index, when another
    structural change committed between its checks and its version lock (``refuse_stale``).

    Why: an edit is checked against this process's index and written under the ``org_version`` lock;
    between the two, another process (or request) may commit a change the index has not applied yet.
    Until 2026-12-05 (广西 audit) the edit was written anyway: two merges of two villages into each
    other at once, one on each of two processes, both answered 200 — both villages retired, their
    positions in a retired unit with their holders still seated — and the second merge's log entry,
    naming a unit the first had retired, could not be applied by any process: every index refresh
    failed from then on, so no org change reached any process until a restart. The same held for
    a rename, move, merge or retirement of a unit retired meanwhile, a child unit or position
    created in one, and a position retired twice; and for a seat (assign, handover, end) authorised
    by a grant over where the position's unit no longer was (the review of 2026-12-05).
    """

    async def run(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        for attempt in range(_EDIT_TRIES):
            token = _CHECKED_AT.set(self.index.version)
            try:
                return await edit(self, *args, **kwargs)
            except _Stale:
                if attempt == _EDIT_TRIES - 1:
                    raise Conflict("the org changed while this edit was made: try it again",
                                   data={"retryable": True}) from None  # fmt: skip
                await self.refresh()
            finally:
                _CHECKED_AT.reset(token)
        raise AssertionError("unreachable")

    functools.update_wrapper(run, edit)  # its name and docstring (the route docs read them)
    return run


async def refuse_stale(conn: AsyncConnection, version: int) -> None:
    """Under the version lock (``version`` is the edit's): ``_Stale`` when a structural change (or a division
    import) committed after the index the edit was checked against (``checked_fresh`` tries again)."""
    checked = _CHECKED_AT.get()
    if checked is not None and checked < version - 1:
        newer = await conn.execute(
            select(org_changes.c.id)
            .where(org_changes.c.version > checked, org_changes.c.version < version)
            .where(org_changes.c.scope.in_(("struct", "tree")))
            .limit(1)
        )
        if newer.first() is not None:
            raise _Stale


class Structure:
    """Create, rename, move, retire and merge units; create and retire positions; create and change roles."""

    def __init__(self, org: OrgService, hooks: OrgHooks | None = None) -> None:
        self._org = org
        self.hooks = hooks or OrgHooks()

    @property
    def index(self) -> OrgIndex:
        return self._org.index

    async def refresh(self) -> bool:
        """Bring the index up to what has committed (``checked_fresh``); True when it was behind."""
        return await self._org.refresh()

    async def _lock(self, conn: AsyncConnection) -> int:
        """Take the version lock and the edit's version; ``_Stale`` when a structural change (or a division
        import) committed after the index the edit was checked against (``checked_fresh`` tries again)."""
        version = await bump_version(conn, self._org.clock, scope="struct")
        await refuse_stale(conn, version)
        return version

    async def _unchanged(self) -> None:
        """Before answering an edit that changes nothing by this index: ``_Stale`` when the index was behind
        what has committed, so the edit is judged again on the refreshed one (``checked_fresh``).

        Why: "nothing changes" is read from this process's index, without the version lock. A rename
        committed on another process a moment before, then a rename back to the old name here, answered
        200 and wrote nothing: the other process's name stayed (the review of 2026-12-05).
        """
        if await self._org.refresh():
            raise _Stale

    def _relabelled(self, u: int) -> list[int]:
        """The ids of the positions in ``u``'s subtree (what a rename, move or merge of ``u`` re-labels), or
        none when they are more than ``TELL_HOLDERS_UP_TO`` (their holders are not told: see there)."""
        idx, out = self.index, []
        for v in idx.subtree(u):
            out += [idx.position_id(k) for k in idx.unit_slots(v)]
            if len(out) > TELL_HOLDERS_UP_TO:
                return []
        return out

    async def _tell_holders(
        self, conn: AsyncConnection, position_ids: list[int], now: datetime
    ) -> list[Callable[[], None]]:
        """``positions.changed`` to everyone holding one of ``position_ids`` now (primary, deputy, acting), in the
        edit's transaction: a rolled-back edit tells nobody, a committed one everybody, whichever process made it.

        Why: until 2026-12-05 a rename, move or merge told nobody, and a holder's client went on showing the old
        unit name and path (and after a merge the old unit) until a reload (广西 audit). The holders are read
        under the edit's version lock, which assignments and handovers take too: none is missed or stale.
        """
        if not position_ids or not self.hooks.units:
            return []
        persons: set[int] = set()
        for i in range(0, len(position_ids), 1000):
            rows = await conn.execute(
                select(assignments.c.person_id)
                .where(assignments.c.position_id.in_(position_ids[i : i + 1000]), assignments.c.end_at.is_(None))
                .distinct()
            )
            persons.update(int(r[0]) for r in rows)
        return await self.hooks.units_changed(conn, sorted(persons), now)

    async def _begin(self, conn: AsyncConnection, ops: list[dict[str, Any]]) -> int:
        version = await self._lock(conn)
        for op in ops:
            await append_change(conn, self._org.clock, version, "struct", op)
        return version

    # ------------------------------------------------------------------ units
    @checked_fresh
    async def create_unit(self, actor: Actor, parent: int | str, name: str, *, code: str | None = None) -> int:
        """A new unit one level below ``parent``; returns its id."""
        idx = self.index
        pu = access_unit(idx, actor, parent)
        await self._org.authorize(actor, Perm.ORG, pu, "org.unit_created", parent_id=idx.unit_id(pu))
        level = idx.unit_level(pu) + 1
        if level > Level.GRID:
            raise BadRequest("grids cannot have child units", data={"field": "parent"})
        clean = normalize_name(check_text(name, field="name", max_chars=100))
        from org_tree.importer import pinyin_of

        full, initials = pinyin_of(clean)
        parent_id, now = idx.unit_id(pu), self._org.clock.now()
        async with self._org.db.write() as conn:
            version = await self._lock(conn)
            if code is None:
                code = await _free_child_code(conn, idx.unit_code(pu), parent_id)
            if not is_unit_code(code):  # what selectors can name
                raise BadRequest("code must be 1-32 ASCII letters and digits", data={"field": "code"})
            if await _code_taken(conn, code):
                raise Conflict(f"unit code {code} exists", code=ErrorCode.ALREADY_EXISTS, data={"code": code})
            uid = int(
                (
                    await conn.execute(
                        insert(units)
                        .values(
                            code=code,
                            name=clean,
                            level=level,
                            parent_id=parent_id,
                            pinyin=full,
                            pinyin_initials=initials,
                            imported=False,
                            created_at=now,
                        )  # fmt: skip
                        .returning(units.c.id)
                    )
                ).scalar_one()
            )
            op = {"op": "unit_create", "unit": uid, "parent": parent_id, "level": level, "code": code, "name": clean,
                  "pinyin": full, "initials": initials}  # fmt: skip
            await append_change(conn, self._org.clock, version, "struct", op)
            await record(conn, self._org.audit(actor, "org.unit_created", pu, unit_id=uid, code=code, name=clean), now)
        await self._org.committed()
        return uid

    @checked_fresh
    async def rename_unit(self, actor: Actor, unit: int | str, name: str) -> int:
        idx = self.index
        u = access_unit(idx, actor, unit)
        await self._org.authorize(actor, Perm.ORG, u, "org.unit_renamed", unit_id=idx.unit_id(u))
        clean = normalize_name(check_text(name, field="name", max_chars=100))
        from org_tree.importer import pinyin_of

        full, initials = pinyin_of(clean)
        uid, old, now = idx.unit_id(u), idx.unit_name(u), self._org.clock.now()
        if clean == old:
            # Nothing changes: no version for every process to apply, no ``org.unit_renamed`` from a name to
            # itself (until 2026-12-05 both were written, 广西 audit; ``change_person`` already wrote none).
            await self._unchanged()
            return uid
        op = {"op": "unit_rename", "unit": uid, "name": clean, "pinyin": full, "initials": initials}
        relabelled = self._relabelled(u)
        async with self._org.db.write() as conn:
            await self._begin(conn, [op])
            await conn.execute(
                update(units).where(units.c.id == uid).values(name=clean, pinyin=full, pinyin_initials=initials)
            )
            after = await self._tell_holders(conn, relabelled, now)
            await record(conn, self._org.audit(actor, "org.unit_renamed", u, unit_id=uid, old=old, name=clean), now)
        await self._org.committed()
        for done in after:
            done()
        return uid

    async def _two_units(self, actor: Actor, unit: int | str, target: int | str, action: str) -> tuple[int, int]:
        """Both units, with an ``org`` grant over each (a move or merge changes both subtrees)."""
        idx = self.index
        u = access_unit(idx, actor, unit)
        t = access_unit(idx, actor, target)
        await self._org.authorize(actor, Perm.ORG, u, action, unit_id=idx.unit_id(u))
        await self._org.authorize(actor, Perm.ORG, t, action, unit_id=idx.unit_id(u), target_id=idx.unit_id(t))
        return u, t

    @checked_fresh
    async def move_unit(self, actor: Actor, unit: int | str, new_parent: int | str) -> int:
        """Move a unit (with its subtree) under another unit of the level above."""
        idx = self.index
        u, p = await self._two_units(actor, unit, new_parent, "org.unit_moved")
        _check_move(idx, u, p, "parent")
        uid, pid, now = idx.unit_id(u), idx.unit_id(p), self._org.clock.now()
        old_parent = idx.unit_id(idx.parent(u)) if idx.parent(u) >= 0 else None
        relabelled = self._relabelled(u)
        async with self._org.db.write() as conn:
            await self._begin(conn, [{"op": "unit_move", "unit": uid, "parent": pid, "from": old_parent}])
            await conn.execute(update(units).where(units.c.id == uid).values(parent_id=pid))
            after = await self._tell_holders(conn, relabelled, now)
            entry = self._org.audit(actor, "org.unit_moved", u, from_parent_id=old_parent, to_parent_id=pid)
            await record(conn, entry, now)
        await self._org.committed()
        for done in after:
            done()
        return uid

    @checked_fresh
    async def retire_unit(self, actor: Actor, unit: int | str, *, successor: int | None = None) -> dict[str, Any]:
        """Retire a unit with its subtree: its positions end, their open work goes to successors."""
        idx = self.index
        u = access_unit(idx, actor, unit)
        await self._org.authorize(actor, Perm.ORG, u, "org.unit_retired", unit_id=idx.unit_id(u))
        _check_retire(idx, u)
        gone_units = set(idx.subtree(u))
        retired = sorted(idx.position_id(k) for v in gone_units for k in idx.unit_slots(v))
        if successor is not None:
            await self._check_successor(actor, successor, gone_units, "org.unit_retired", unit_id=idx.unit_id(u))
        moves = successors(idx, retired, gone_units, successor)
        unit_ids = sorted(idx.unit_id(v) for v in gone_units)
        uid, now = idx.unit_id(u), self._org.clock.now()
        by = actor.person_id or None  # a person: a re-import keeps the units retired (org_tree/importer.py)
        async with self._org.db.write() as conn:
            await self._begin(conn, [{"op": "unit_retire", "unit": uid}])
            for i in range(0, len(unit_ids), 1000):
                chunk = unit_ids[i : i + 1000]
                await conn.execute(update(units).where(units.c.id.in_(chunk)).values(dissolved_at=now, retired_by=by))
                await conn.execute(
                    update(positions)
                    .where(positions.c.unit_id.in_(chunk), positions.c.removed_at.is_(None))
                    .values(removed_at=now)
                )
            holders: set[int] = set()
            lost: dict[int, tuple[list[int], list[int]]] = {}
            for i in range(0, len(retired), 1000):  # as retire_position: a removed position has no holders
                ended = await conn.execute(
                    update(assignments)
                    .where(assignments.c.position_id.in_(retired[i : i + 1000]), assignments.c.end_at.is_(None))
                    .values(end_at=now)
                    .returning(assignments.c.person_id, assignments.c.position_id)
                )
                for person, pos in ended:
                    holders.add(int(person))
                    lost.setdefault(int(person), ([], []))[1].append(int(pos))
            after = await self.hooks.positions_retired(conn, moves, now, actor.person_id or None)
            after += await self.hooks.holders_changed(conn, lost, now)
            entry = self._org.audit(actor, "org.unit_retired", u, unit_id=uid, units=len(unit_ids),
                                    positions=len(retired), successor=successor,
                                    holders=sorted(holders))  # fmt: skip
            await record(conn, entry, now)
        await self._org.committed()
        for done in after:
            done()
        return {"unit_id": uid, "units": len(unit_ids), "positions": retired, "successors": moves}

    async def _check_successor(
        self, actor: Actor, successor: int, gone_units: set[int], action: str, **detail: Any
    ) -> None:
        """The named successor stays, and lies in the actor's ``org`` grants; a refusal is audited.

        Audited as the edit's own refusal (``admin.denied`` naming the ``successor``): before, a successor in
        the neighbouring county was answered ``403 no_grant`` with nothing on record (江西 audit).
        """
        idx = self.index
        k = idx.find_slot(successor)
        if k < 0 or idx.position_unit(k) in gone_units:
            raise BadRequest("the successor must be a position that stays", data={"field": "successor"})
        await self._org.authorize(actor, Perm.ORG, idx.position_unit(k), action, successor=successor, **detail)

    @checked_fresh
    async def merge_units(self, actor: Actor, unit: int | str, into: int | str) -> dict[str, Any]:
        """Merge ``unit`` into ``into`` (same level): children and positions move, holders and history stay."""
        idx = self.index
        u, t = await self._two_units(actor, unit, into, "org.units_merged")
        _check_merge(idx, u, t, "into")
        uid, tid, now = idx.unit_id(u), idx.unit_id(t), self._org.clock.now()
        moved = [idx.position_id(k) for k in idx.unit_slots(u)]
        kids = [idx.unit_id(c) for c in idx.children(u)]
        relabelled = self._relabelled(u)  # its own (now in ``into``) and its children's (now under ``into``)
        async with self._org.db.write() as conn:
            await self._begin(conn, [{"op": "unit_merge", "unit": uid, "into": tid}])
            await conn.execute(update(units).where(units.c.parent_id == uid).values(parent_id=tid))
            await conn.execute(
                update(positions).where(positions.c.unit_id == uid, positions.c.removed_at.is_(None))
                .values(unit_id=tid)
            )  # fmt: skip
            await conn.execute(
                update(units).where(units.c.id == uid).values(dissolved_at=now, retired_by=actor.person_id or None)
            )
            await self.hooks.positions_moved(conn, dict.fromkeys(moved, tid), now)
            after = await self._tell_holders(conn, relabelled, now)
            # Filed under the unit merged away, at its path before the merge (as a move is under the moved unit's
            # old path): its own township's auditors see it go. Until 2026-12-05 it was filed under ``into``
            # alone, and a township's auditor never saw one of its villages merged into another township's
            # (广西 audit).
            entry = self._org.audit(actor, "org.units_merged", u, unit_id=uid, into_id=tid, children=kids,
                                    positions=moved)  # fmt: skip
            await record(conn, entry, now)
        await self._org.committed()
        for done in after:
            done()
        return {"unit_id": uid, "into_id": tid, "children_moved": kids, "positions_moved": moved}

    async def preview(self, actor: Actor, action: str, unit: int | str, target: int | str | None) -> dict[str, Any]:
        """What a ``move``, ``merge`` or ``retire`` of ``unit`` would touch, before it is made (same grants)."""
        idx = self.index
        # Refused as the edit would be, and on record as its refusal is (``"preview": true`` beside what the
        # edit's entry names): a preview shows what a unit holds, and its refusals went unrecorded (江西 audit).
        attempted = _EDIT_ACTIONS.get(action, "org.unit_retired")
        if action == "retire" and target is not None:
            # The retirement takes no unit besides its own (its body refuses one): until 2026-12-05 a target here
            # was dropped and the preview answered 200 as if none were sent (广西 audit).
            raise BadRequest("a retirement has no target", data={"field": "target"})
        if action == "retire" or target is None:
            u = access_unit(idx, actor, unit)
            await self._org.authorize(actor, Perm.ORG, u, attempted, unit_id=idx.unit_id(u), preview=True)
            t = -1
            _check_retire(idx, u)
        else:
            u, t = access_unit(idx, actor, unit), access_unit(idx, actor, target)
            await self._org.authorize(actor, Perm.ORG, u, attempted, unit_id=idx.unit_id(u), preview=True)
            await self._org.authorize(
                actor, Perm.ORG, t, attempted, unit_id=idx.unit_id(u), target_id=idx.unit_id(t), preview=True
            )
            # the edit's own refusals: a preview of an edit that would be refused is refused
            (_check_move if action == "move" else _check_merge)(idx, u, t, "target")
        below = list(idx.subtree(u))
        moved = [k for v in (below if action != "merge" else [u]) for k in idx.unit_slots(v)]
        pids = sorted(idx.position_id(k) for k in moved)
        persons = {p for k in moved for p in idx.current_holders(k)}
        vacant = sum(1 for k in moved if idx.is_vacant(k))
        groups_at = {*idx.ancestors(u), *([t, *idx.ancestors(t)] if t >= 0 else []), u}
        out: dict[str, Any] = {
            "action": action, "version": idx.version, "unit": self._brief(u),
            "target": self._brief(t) if t >= 0 else None, "units": len(below) if action != "merge" else 1,
            "children": len(idx.children(u)), "positions": len(pids), "holders": len(persons), "vacant": vacant,
            "position_ids": pids[:100],
        }  # fmt: skip
        if action == "retire":
            succ = successors(idx, pids, set(below), None)
            out["without_successor"] = sorted(p for p, s in succ.items() if s is None)[:100]
        async with self._org.db.read() as conn:
            out.update(await self.hooks.counts(conn, pids, sorted(idx.unit_id(v) for v in groups_at)))
        return out

    def _brief(self, u: int) -> dict[str, Any]:
        idx = self.index
        return {"id": idx.unit_id(u), "code": idx.unit_code(u), "name": idx.unit_name(u), "path": idx.unit_path(u)}

    # -------------------------------------------------------------- positions
    @checked_fresh
    async def create_position(self, actor: Actor, unit: int | str, role: str, *, title: str | None = None) -> int:
        idx = self.index
        u = access_unit(idx, actor, unit)
        await self._org.authorize(actor, Perm.ORG, u, "org.position_created", role=role)
        info = idx.roles[idx.role_id(role)]
        if idx.unit_level(u) not in info.levels:
            raise BadRequest(f"role {info.name} does not exist at level {Level(idx.unit_level(u)).label}",
                             data={"field": "role"})  # fmt: skip
        if title is not None:
            title = normalize_name(check_text(title, field="title", max_chars=100))
        uid, now = idx.unit_id(u), self._org.clock.now()
        async with self._org.db.write() as conn:
            version = await self._lock(conn)
            res = await conn.execute(
                insert(positions)
                .values(unit_id=uid, role_id=info.id, title=title, pool=info.pool, created_at=now)
                .returning(positions.c.id)
            )
            pid = int(res.scalar_one())
            op = {"op": "position_create", "position": pid, "unit": uid, "role": info.id}
            if title is not None:
                op["title"] = title
            await append_change(conn, self._org.clock, version, "struct", op)
            await record(conn, self._org.audit(actor, "org.position_created", u, position_id=pid, role=info.key), now)
        await self._org.committed()
        return pid

    @checked_fresh
    async def retire_position(self, actor: Actor, position_id: int, *, successor: int | None = None) -> dict[str, Any]:
        """Retire a position: its holders' assignments end, its open tasks go to the successor."""
        idx = self.index
        k = idx.slot(position_id)
        u = idx.position_unit(k)
        await self._org.authorize(actor, Perm.ORG, u, "org.position_retired", position_id=position_id)
        if successor is not None:
            if successor == position_id:
                raise BadRequest("a position cannot succeed itself", data={"field": "successor"})
            await self._check_successor(actor, successor, set(), "org.position_retired", position_id=position_id)
        moves = successors(idx, [position_id], set(), successor)
        now = self._org.clock.now()
        async with self._org.db.write() as conn:
            await self._begin(conn, [{"op": "position_retire", "position": position_id}])
            await conn.execute(update(positions).where(positions.c.id == position_id).values(removed_at=now))
            ended = await conn.execute(
                update(assignments)
                .where(assignments.c.position_id == position_id, assignments.c.end_at.is_(None))
                .values(end_at=now)
                .returning(assignments.c.person_id)
            )
            holders = sorted({int(r[0]) for r in ended})
            after = await self.hooks.positions_retired(conn, moves, now, actor.person_id or None)
            after += await self.hooks.holders_changed(conn, {p: ([], [position_id]) for p in holders}, now)
            entry = self._org.audit(actor, "org.position_retired", u, position_id=position_id, holders=holders,
                                    successor=moves[position_id])  # fmt: skip
            await record(conn, entry, now)
        await self._org.committed()
        for done in after:
            done()
        return {"position_id": position_id, "successor": moves[position_id], "holders_ended": holders}

    # ------------------------------------------------------------------ roles
    @checked_fresh
    async def create_role(self, actor: Actor, raw: dict[str, Any]) -> int:
        from org_tree.roles import validate_role

        await self._org.authorize(actor, Perm.ROLES, None, "org.role_created")
        name = raw.get("name")
        if isinstance(name, str):  # as a rename checks it: no NUL (PostgreSQL refuses it: a 500 before)
            raw = {**raw, "name": normalize_name(check_text(name, field="name", max_chars=100))}
        spec = validate_role({**raw, "auto": raw.get("auto", False)})
        now = self._org.clock.now()
        async with self._org.db.write() as conn:
            version = await self._lock(conn)
            await _refuse_role_clash(conn, spec.key, "key")
            await _refuse_role_clash(conn, spec.name, "name")
            res = await conn.execute(
                insert(roles).values(key=spec.key, name=spec.name, levels=spec.levels_text,
                                     jurisdiction=spec.jurisdiction, is_head=spec.is_head, pool=spec.pool,
                                     auto=spec.auto, created_at=now).returning(roles.c.id)
            )  # fmt: skip
            rid = int(res.scalar_one())
            row = [rid, spec.key, spec.name, spec.levels_text, spec.jurisdiction, spec.is_head, spec.pool]
            await append_change(conn, self._org.clock, version, "struct", {"op": "role_set", "role": row})
            await record(conn, self._org.audit(actor, "org.role_created", None, key=spec.key, name=spec.name), now)
        await self._org.committed()
        return rid

    @checked_fresh
    async def update_role(self, actor: Actor, ref: str | int, *, name: str | None, jurisdiction: str | None) -> int:
        """Rename a role and/or change its jurisdiction rule (its levels and kind stay)."""
        await self._org.authorize(actor, Perm.ROLES, None, "org.role_changed", role=str(ref))
        idx = self.index
        info = idx.roles[idx.role_id(ref)]
        new_name = normalize_name(check_text(name, field="name", max_chars=100)) if name is not None else info.name
        if new_name != info.name and not is_role_word(new_name):
            raise BadRequest(ROLE_NAME_RULE, data={"field": "name"})
        rule = jurisdiction if jurisdiction is not None else info.jurisdiction
        if rule not in JURISDICTION_RULES:
            raise BadRequest(f"jurisdiction must be one of {', '.join(JURISDICTION_RULES)}",
                             data={"field": "jurisdiction"})  # fmt: skip
        if (new_name, rule) == (info.name, info.jurisdiction):
            await self._unchanged()
            return info.id  # nothing changes: no version, no ``org.role_changed`` (as a rename to the same name)
        levels = ",".join(Level(lv).label for lv in info.levels)
        row = [info.id, info.key, new_name, levels, rule, info.is_head, info.pool]
        now = self._org.clock.now()
        async with self._org.db.write() as conn:
            await self._begin(conn, [{"op": "role_set", "role": row}])
            if new_name != info.name:
                await _refuse_role_clash(conn, new_name, "name", but=info.id)
            await conn.execute(update(roles).where(roles.c.id == info.id).values(name=new_name, jurisdiction=rule))
            entry = self._org.audit(actor, "org.role_changed", None, key=info.key, old_name=info.name, name=new_name,
                                    old_jurisdiction=info.jurisdiction, jurisdiction=rule)  # fmt: skip
            await record(conn, entry, now)
        await self._org.committed()
        return info.id


async def _refuse_role_clash(conn: AsyncConnection, word: str, field: str, *, but: int | None = None) -> None:
    """``409 already_exists`` when ``word`` (a new role's key or name) is another role's key or name.

    Roles are named by key or by name alike (selectors, ``PATCH /api/v1/org/roles/{key or name}``),
    so a name equal to another role's key (or a key equal to another's name) would make that
    word mean two roles; before, only key against key and name against name were compared.
    """
    q = select(roles.c.id).where((roles.c.key == word) | (roles.c.name == word))
    if but is not None:
        q = q.where(roles.c.id != but)
    if (await conn.execute(q)).first() is not None:
        raise Conflict(f"a role named {word} exists", code=ErrorCode.ALREADY_EXISTS, data={"field": field, field: word})


async def _code_taken(conn: AsyncConnection, code: str) -> bool:
    return (await conn.execute(select(units.c.id).where(units.c.code == code))).first() is not None


async def _free_child_code(conn: AsyncConnection, parent_code: str, parent_id: int) -> str:
    """``<parent code>x<NNN>``: the first free number from the parent's child count on.

    A child that moved away, or was merged away or retired, keeps its code (rows are never
    deleted) while the count drops, so the count alone named a taken code: before, every
    create under such a parent without a code answered ``409 already_exists`` for a code the
    client never sent, forever. The candidates are looked up together, by the unique code.
    """
    n = int((await conn.execute(select(func.count()).where(units.c.parent_id == parent_id))).scalar_one())
    candidates = [f"{parent_code}x{k:03d}" for k in range(n + 1, n + 1 + _CODE_TRIES)]
    taken = set((await conn.execute(select(units.c.code).where(units.c.code.in_(candidates)))).scalars())
    for code in candidates:
        if code not in taken:
            return code
    raise Conflict("no free default code under this parent: give one", code=ErrorCode.ALREADY_EXISTS,
                   data={"field": "code"})  # fmt: skip


#: Default codes tried past the child count before asking for a code (each taken one is a
#: child created here and moved, merged or retired since).
_CODE_TRIES = 1000


def _check_move(idx: OrgIndex, u: int, parent: int, field: str) -> None:
    """A move's refusals, for the move and its preview (``field``: ``parent`` or ``target``)."""
    if idx.unit_level(parent) != idx.unit_level(u) - 1:
        raise BadRequest("the new parent must be one level above the unit", data={"field": field})
    if idx.parent(u) == parent:
        raise Conflict("the unit is already there", data={"unit_id": idx.unit_id(u)})


def _check_merge(idx: OrgIndex, u: int, into: int, field: str) -> None:
    """A merge's refusal, for the merge and its preview (``field``: ``into`` or ``target``)."""
    if u == into or idx.unit_level(u) != idx.unit_level(into) or idx.contains(u, into):
        raise BadRequest("merge two different units of the same level", data={"field": field})


def _check_retire(idx: OrgIndex, u: int) -> None:
    if idx.parent(u) < 0:
        raise BadRequest("a root unit cannot be retired", data={"field": "unit"})
