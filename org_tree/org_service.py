"""The org tree's service: what the REST layer and the CLI call.

Why one place: every read of non-public org data goes through an access
check here (``org_tree.jurisdiction``), every change through an admin grant
check (``org_tree.grants``; a refusal is itself audited), and every change
bumps ``org_version`` and appends its audit entry in its own transaction, so
all processes' indexes follow and the record exists exactly when the change
does. Reads use this process's index; after a write the local index is
refreshed before returning, so a caller sees its own change at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from kernel.audit import AuditEntry, record
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.errors import BadRequest, Conflict, Forbidden, NotFound
from kernel.schema import auth_sessions, persons
from kernel.text import check_text, normalize_name
from org_tree.directory_service import DirectoryService, PersonCard
from org_tree.divisions import Level
from org_tree.grants import Perm, active_grants, grant_reach, grant_unit, holds_grant, require_grant, unit_path_of
from org_tree.holder import OrgIndexHolder
from org_tree.index import OrgIndex, RoleInfo
from org_tree.jurisdiction import Actor, access_position, access_unit, check_jurisdiction
from org_tree.org_schema import assignments, positions, units
from org_tree.preview import Preview, preview
from org_tree.resolution import Audience, VacancyPolicy, resolve_ranges
from org_tree.search import DirectoryPage
from org_tree.selectors import Selector
from org_tree.structure import OrgHooks, Structure, checked_fresh, refuse_stale
from org_tree.versioning import append_change, bump_version

logger = logging.getLogger(__name__)

__all__ = ["AssignmentView", "Handed", "OrgService", "PositionView", "UnitView"]

KINDS = ("primary", "deputy", "acting")


@dataclass(frozen=True, slots=True)
class UnitView:
    id: int
    code: str
    name: str
    level: str
    parent_id: int | None
    path: tuple[str, ...]
    children: int
    position_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PositionView:
    id: int
    role_key: str
    role: str
    unit_id: int
    unit_path: tuple[str, ...]
    pool: bool
    holders: tuple[int, ...]  # primary holders' person ids
    alternates: tuple[tuple[int, str], ...]  # (person id, deputy|acting)
    title: str | None = None  # as created (副书记), else None


def position_view(
    idx: OrgIndex, k: int, holders: tuple[int, ...], alternates: tuple[tuple[int, str], ...]
) -> PositionView:
    """Slot ``k``'s view with the holders given: the index's own, or (``positions.changed``) those just
    read in a change's transaction, which the index has not seen yet."""
    role, unit = idx.position_role(k), idx.position_unit(k)
    return PositionView(
        id=idx.position_id(k),
        role_key=role.key,
        role=role.name,
        unit_id=idx.unit_id(unit),
        unit_path=tuple(idx.unit_path(unit)),
        pool=role.pool,
        holders=holders,
        alternates=alternates,
        title=idx.position_title(k),
    )


@dataclass(frozen=True, slots=True)
class AssignmentView:
    id: int
    person_id: int
    position_id: int
    kind: str
    start_at: datetime
    end_at: datetime | None


@dataclass(frozen=True, slots=True)
class Handed(AssignmentView):
    """A handover as it committed: the new assignment, the primary holders it replaced and the unread
    notices that passed to the new holder, all read in the handover's own transaction."""

    previous_holders: list[int]
    unread_notices_moved: int


class OrgService:
    """Units, roles, positions, assignments, handover, search, preview and resolution.

    Args:
        hooks: the work in flight that follows a structural edit (messaging's open
            tasks and conversations), run in the edit's transaction.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        holder: OrgIndexHolder,
        *,
        policy: VacancyPolicy | None = None,
        hooks: OrgHooks | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._holder = holder
        self._policy = policy or VacancyPolicy()
        self.directory = DirectoryService(db, holder, self._policy)
        self.structure = Structure(self, hooks)
        #: Role keys whose positions nobody seats through ``assign`` or ``handover`` (``reserve_role``).
        self.reserved_roles: set[str] = set()

    def reserve_role(self, key: str) -> None:
        """Positions of role ``key`` are seated only by the code that made them (``seat_reserved=True``).

        Why: an app's bot position (``apps``, role ``app_bot``) is the app. Seated through the
        ``assignments`` grant alone, a person sent notices and tasks as the app, labelled with its name,
        and received what was handed to it, with no ``apps`` permission (江西 audit).
        """
        self.reserved_roles.add(key)

    async def _refuse_reserved(self, actor: Actor, k: int, action: str, position_id: int) -> None:
        """Refuse (403, audited) seating anyone in a position of a reserved role."""
        role = self.index.position_role(k)
        if role.key not in self.reserved_roles:
            return
        unit = self.index.position_unit(k)
        await self.deny(actor, Perm.ASSIGNMENTS, unit, action, position_id=position_id, role=role.key)
        raise Forbidden(
            f"a position of role {role.key} is held by what it was made for: nobody is seated in it",
            data={"position_id": position_id, "role": role.key},
        )

    @property
    def hooks(self) -> OrgHooks:
        return self.structure.hooks

    @property
    def index(self) -> OrgIndex:
        return self._holder.index

    async def actor(self, person_id: int) -> Actor:
        """The actor for a person: the positions they currently hold and their admin grants.

        Only positions of the live tree count: a division re-import that drops a unit dissolves it with
        its positions' assignments left open, so that the unit comes back with its holders if a later
        import lists it again (org_tree/importer.py); meanwhile its holders hold nothing there.
        """
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(assignments.c.position_id)
                .where(assignments.c.person_id == person_id, assignments.c.end_at.is_(None))
                .order_by(assignments.c.position_id)
            )
            idx = self.index
            held = tuple(dict.fromkeys(int(r[0]) for r in rows if idx.find_slot(int(r[0])) >= 0))
            grants = tuple(await active_grants(conn, person_id))
        return Actor(person_id, held, grants)

    async def authorize(self, actor: Actor, perm: Perm, u: int | None, action: str, **detail: Any) -> None:
        """:func:`require_grant`, and a refusal is written to the audit log (``admin.denied``) before it is raised."""
        try:
            require_grant(self.index, actor, perm, u)
        except Forbidden:
            await self.deny(actor, perm, u, action, **detail)
            raise

    async def deny(self, actor: Actor, perm: Perm, u: int | None, action: str, **detail: Any) -> None:
        """Write a refused administrative attempt (``admin.denied``) to the audit log; the caller then refuses.

        Also for refusals that are not a missing grant (a self-grant, disabling oneself): docs/admin.md
        promises every refused administrative attempt on record, and those were answered 403 unrecorded.
        """
        idx = self.index
        unit_id, path = unit_path_of(idx, u)
        # Filed under the target, and also under the actor's own units (those of their positions and
        # grants): an attempt on the neighbouring county is seen by the auditors of the actor's county too,
        # not only by the neighbour's (found by the administration audit).
        own = {idx.position_unit(k) for k in (idx.find_slot(p) for p in actor.position_ids) if k >= 0}
        own |= {w for w in (grant_unit(idx, g) for g in actor.grants) if w is not None}
        mine = sorted((unit_path_of(idx, o) for o in own), key=lambda x: str(x[1]))
        more = {"actor_unit_ids": [i for i, _ in mine]} if mine else {}
        entry = AuditEntry(
            "admin.denied", actor.person_id or None, None, "denied", unit_id, path,
            {"attempted": action, "permission": str(perm), **detail, **more}, tuple(str(q) for _, q in mine),
        )  # fmt: skip
        async with self._db.write() as conn:
            await record(conn, entry, self._clock.now())

    def audit(self, actor: Actor, action: str, u: int | None, **detail: Any) -> AuditEntry:
        """The audit entry of a successful org change by ``actor`` at pre-order unit ``u``."""
        unit_id, path = unit_path_of(self.index, u)
        return AuditEntry(action, actor.person_id or None, None, "ok", unit_id, path, detail)

    # ------------------------------------------------------------- reads
    def get_unit(self, actor: Actor, unit: int | str) -> UnitView:
        idx = self.index
        u = access_unit(idx, actor, unit)
        return self._unit_view(idx, u)

    def list_children(self, actor: Actor, unit: int | str, *, offset: int = 0, limit: int = 50) -> list[UnitView]:
        idx = self.index
        u = access_unit(idx, actor, unit)
        return [self._unit_view(idx, c) for c in idx.children(u)[offset : offset + limit]]

    def _unit_view(self, idx: OrgIndex, u: int) -> UnitView:
        p = idx.parent(u)
        return UnitView(
            id=idx.unit_id(u),
            code=idx.unit_code(u),
            name=idx.unit_name(u),
            level=Level(idx.unit_level(u)).label,
            parent_id=idx.unit_id(p) if p >= 0 else None,
            path=tuple(idx.unit_path(u)),
            children=len(idx.children(u)),
            position_ids=tuple(idx.position_id(k) for k in idx.unit_slots(u)),
        )

    def list_roles(self) -> list[RoleInfo]:
        return sorted(self.index.roles.values(), key=lambda r: r.id)

    def get_position(self, actor: Actor, position_id: int) -> PositionView:
        idx = self.index
        k = access_position(idx, actor, position_id)
        return position_view(idx, k, idx.primary_holders(k), idx.alternate_holders(k))

    async def history(self, actor: Actor, position_id: int) -> list[AssignmentView]:
        """Every assignment of a position, oldest first (private: within the actor's scopes)."""
        access_position(self.index, actor, position_id, private=True)
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(assignments).where(assignments.c.position_id == position_id).order_by(assignments.c.id)
            )
            return [_assignment(r) for r in rows]

    async def search(self, actor: Actor, query: str, *, offset: int = 0, limit: int = 20) -> DirectoryPage:
        """找岗位: the directory is public to every signed-in person (phones: administrators only)."""
        return await self.directory.search(actor, query, offset=offset, limit=limit)

    async def person(self, actor: Actor, person_id: int) -> PersonCard:
        """One person by id, as the directory shows them (a holder is public; others: 404)."""
        return await self.directory.person(actor, person_id)

    def _acting_as(self, actor: Actor, actor_position_id: int) -> None:
        """Resolving as a position: its holders, or an org or audit administrator over its unit (read-only)."""
        if actor_position_id in actor.position_ids:
            return
        idx = self.index
        k = idx.slot(actor_position_id)
        if holds_grant(idx, actor, Perm.ORG, idx.position_unit(k)) or holds_grant(
            idx, actor, Perm.AUDIT, idx.position_unit(k)
        ):
            return
        if actor_position_id not in actor.position_ids:
            raise Forbidden("you do not hold that position", data={"as_position": actor_position_id})

    def resolve(self, actor: Actor, actor_position_id: int, selector: Selector) -> Audience:
        """Resolve a selector on behalf of one of the actor's positions (jurisdiction checked)."""
        self._acting_as(actor, actor_position_id)
        idx = self.index
        ranges = check_jurisdiction(idx, actor_position_id, selector)
        return resolve_ranges(idx, ranges, self._policy)

    def preview(
        self, actor: Actor, actor_position_id: int, selector: Selector, *, under: int | str | None = None
    ) -> Preview:
        audience = self.resolve(actor, actor_position_id, selector)
        u = access_unit(self.index, actor, under) if under is not None else None
        return preview(self.index, audience, under=u)

    async def stats(self) -> dict[str, Any]:
        """Unit counts per level and the numbers of positions, assignments and persons (``zzd org stats``)."""
        async with self._db.read() as conn:
            per_level: dict[int, int] = dict(
                (
                    await conn.execute(
                        select(units.c.level, func.count())
                        .where(units.c.dissolved_at.is_(None))
                        .group_by(units.c.level)
                    )
                ).all()
            )
            n_pos = (await conn.execute(select(func.count()).where(positions.c.removed_at.is_(None)))).scalar_one()
            n_asg = (await conn.execute(select(func.count()).where(assignments.c.end_at.is_(None)))).scalar_one()
            n_per = (await conn.execute(select(func.count()).select_from(persons))).scalar_one()
        return {
            "units": {Level(int(lv)).label: int(n) for lv, n in sorted(per_level.items())},
            "positions": int(n_pos),
            "assignments": int(n_asg),
            "persons": int(n_per),
        }

    # ------------------------------------------------------------ writes
    @property
    def db(self) -> Database:
        return self._db

    @property
    def clock(self) -> Clock:
        return self._clock

    async def refresh(self) -> bool:
        """Bring this process's index up to what has committed (an edit checked against a stale one); True
        when it was behind."""
        return await self._holder.refresh_if_changed()

    async def committed(self) -> None:
        """After a write: bring this process's index (and directory) up to it before answering, and wake the others."""
        await self._holder.committed()

    async def create_unit(self, actor: Actor, parent: int | str, name: str, *, code: str | None = None) -> UnitView:
        uid = await self.structure.create_unit(actor, parent, name, code=code)
        return self._unit_view(self.index, self.index.unit(uid))

    async def move_unit(self, actor: Actor, unit: int | str, new_parent: int | str) -> UnitView:
        """Move a unit (with its subtree) under another unit of the level above."""
        uid = await self.structure.move_unit(actor, unit, new_parent)
        return self._unit_view(self.index, self.index.unit(uid))

    async def rename_unit(self, actor: Actor, unit: int | str, name: str) -> UnitView:
        uid = await self.structure.rename_unit(actor, unit, name)
        return self._unit_view(self.index, self.index.unit(uid))

    async def create_role(self, actor: Actor, raw: dict[str, Any]) -> RoleInfo:
        return self.index.roles[await self.structure.create_role(actor, raw)]

    async def update_role(
        self, actor: Actor, ref: str | int, *, name: str | None = None, jurisdiction: str | None = None
    ) -> RoleInfo:
        return self.index.roles[await self.structure.update_role(actor, ref, name=name, jurisdiction=jurisdiction)]

    async def create_position(
        self, actor: Actor, unit: int | str, role: str, *, title: str | None = None
    ) -> PositionView:
        return self.get_position(actor, await self.structure.create_position(actor, unit, role, title=title))

    async def change_person(
        self,
        actor: Actor,
        person_id: int,
        *,
        name: str | None = None,
        phone: str | None = None,
        disabled: bool | None = None,
    ) -> dict[str, Any]:
        """Rename a person, change their phone, or disable (enable) their account: an ``assignments`` grant
        over every unit where they hold a position and over the unit of every grant of theirs (a whole-tree
        one for a person holding neither). The directory finds the new name at once. Disabling ends every
        session of theirs in the same transaction (``sessions_ended``); the caller closes their sockets.
        Nobody disables themselves.

        Why every, not any: an administrator of one county may seat anyone as a deputy there. Were one
        seat enough, they could then rename or lock out the governor, or the whole-tree administrator
        (who holds no position at all), ending every session of theirs.
        """
        from org_tree.provisioning import _phone

        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(persons.c.name, persons.c.phone, persons.c.disabled).where(persons.c.id == person_id)
                )
            ).first()
            held = [int(r[0]) for r in await conn.execute(
                select(assignments.c.position_id).where(assignments.c.person_id == person_id,
                                                         assignments.c.end_at.is_(None)))]  # fmt: skip
            idx = self.index
            grants = (await grant_reach(conn, idx, [person_id]))[person_id]
        units = [u for u in map(idx.unit_of_position, held) if u >= 0]
        reach = [*units, *grants]  # each grant's unit (None: the whole tree, or a unit no longer in the tree)
        beyond = [u for u in reach or [None] if not holds_grant(idx, actor, Perm.ASSIGNMENTS, u)]
        if row is None or beyond:
            # Audited, then answered like an unknown id (which is audited alike): the entry the actor's own
            # auditors see names no unit, so it tells nothing of where a grant of theirs lies (``hidden``).
            await self.deny(actor, Perm.ASSIGNMENTS, beyond[0] if row is not None else None,
                            "person.disabled" if disabled else "person.updated", person_id=person_id,
                            hidden=True)  # fmt: skip
            raise NotFound("no such person", data={"person_id": person_id})
        if disabled is not None and person_id == actor.person_id:
            await self.deny(actor, Perm.ASSIGNMENTS, units[0] if units else None,
                            "person.disabled" if disabled else "person.enabled",
                            person_id=person_id, reason="self")  # fmt: skip
            raise Forbidden("nobody disables or enables their own account", data={"field": "disabled"})
        new_name = normalize_name(check_text(name, field="name", max_chars=100)) if name is not None else row.name
        new_phone = _phone(phone) if phone is not None else row.phone
        new_disabled = bool(row.disabled) if disabled is None else disabled
        now, unit, ended = self._clock.now(), units[0] if units else None, 0
        if (new_name, new_phone, new_disabled) == (row.name, row.phone, bool(row.disabled)):
            # Nothing changes: no write, no version, no ``person.updated`` that changed nothing (an empty
            # body was audited as an update before the administration audit).
            return {"id": person_id, "name": new_name, "phone": new_phone, "disabled": new_disabled,
                    "sessions_ended": 0}  # fmt: skip
        async with self._db.write() as conn:
            version = await bump_version(conn, self._clock, scope="person")
            await conn.execute(
                update(persons)
                .where(persons.c.id == person_id)
                .values(name=new_name, phone=new_phone, disabled=new_disabled)
            )
            if new_name != row.name:
                await append_change(conn, self._clock, version, "person", {"op": "person", "person": person_id,
                                                                           "name": new_name})  # fmt: skip
            if disabled is None or name is not None or phone is not None:
                entry = self.audit(actor, "person.updated", unit, person_id=person_id,
                                   old_name=row.name, name=new_name, phone_changed=new_phone != row.phone)  # fmt: skip
                await record(conn, entry, now)
            if new_disabled and not row.disabled:
                res = await conn.execute(
                    update(auth_sessions)
                    .where(auth_sessions.c.person_id == person_id, auth_sessions.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                ended = int(res.rowcount or 0)
            if new_disabled != bool(row.disabled):
                action = "person.disabled" if new_disabled else "person.enabled"
                detail = {"person_id": person_id, **({"sessions_ended": ended} if new_disabled else {})}
                await record(conn, self.audit(actor, action, unit, **detail), now)
        await self.committed()
        return {"id": person_id, "name": new_name, "phone": new_phone, "disabled": new_disabled,
                "sessions_ended": ended}  # fmt: skip

    @checked_fresh
    async def assign(
        self, actor: Actor, position_id: int, person_id: int, *, kind: str = "primary", start: datetime | None = None
    ) -> AssignmentView:
        """Add a holder. A single (non-pool) position with a primary holder needs ``handover`` instead."""
        idx = self.index
        k = access_position(idx, actor, position_id)
        await self.authorize(actor, Perm.ASSIGNMENTS, idx.position_unit(k), "org.assigned", position_id=position_id)
        await self._refuse_reserved(actor, k, "org.assigned", position_id)
        if kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}", data={"field": "kind"})
        pool = idx.position_role(k).pool
        async with self._db.write() as conn:
            # Checked again on a refreshed index if the tree changed since (the grant, where the position is).
            await refuse_stale(conn, await bump_version(conn, self._clock, scope="holders",
                                                        position_ids=[position_id], detail="assign"))  # fmt: skip
            # Read under the version lock: org writes commit in this order, so a period never ends before it starts.
            at = start or self._clock.now()
            await _require_live_position(conn, position_id)
            await _require_person(conn, person_id)
            current = (
                await conn.execute(
                    select(assignments.c.person_id, assignments.c.kind).where(
                        assignments.c.position_id == position_id, assignments.c.end_at.is_(None)
                    )
                )
            ).all()
            if any(int(p) == person_id for p, _ in current):
                raise Conflict("the person already holds this position", data={"person_id": person_id})
            if kind == "primary" and not pool and any(kd == "primary" for _, kd in current):
                raise Conflict("the position is held; use handover", data={"position_id": position_id})
            aid = await _start_assignment(conn, person_id, position_id, kind, at)
            after = await self.hooks.holders_changed(conn, {person_id: ([position_id], [])}, self._clock.now())
            entry = self.audit(actor, "org.assigned", idx.position_unit(k), position_id=position_id,
                               person_id=person_id, kind=kind, assignment_id=aid)  # fmt: skip
            await record(conn, entry, self._clock.now())
        await self.committed()
        for done in after:
            done()
        return AssignmentView(aid, person_id, position_id, kind, at, None)

    @checked_fresh
    async def end_assignment(self, actor: Actor, assignment_id: int, *, end: datetime | None = None) -> AssignmentView:
        async with self._db.read() as conn:
            row = (await conn.execute(select(assignments).where(assignments.c.id == assignment_id))).first()
        missing = NotFound("no such assignment", data={"assignment_id": assignment_id})
        idx = self.index
        k = idx.find_slot(int(row.position_id)) if row is not None else -1
        if k < 0 or not holds_grant(idx, actor, Perm.ASSIGNMENTS, idx.position_unit(k)):
            # Like an unknown id, and on record like one: neither the answer nor the entry the actor's own
            # auditors see tells which position (or whether any) the assignment is of (``hidden``).
            await self.deny(actor, Perm.ASSIGNMENTS, idx.position_unit(k) if k >= 0 else None,
                            "org.assignment_ended", assignment_id=assignment_id, hidden=True)  # fmt: skip
            raise missing
        assert row is not None
        async with self._db.write() as conn:
            await refuse_stale(conn, await bump_version(conn, self._clock, scope="holders",
                                                        position_ids=[int(row.position_id)], detail="end"))  # fmt: skip
            at = end or self._clock.now()  # under the version lock, as in ``handover``
            res = await conn.execute(
                update(assignments)
                .where(assignments.c.id == assignment_id, assignments.c.end_at.is_(None))
                .values(end_at=at)
            )
            if res.rowcount == 0:
                raise Conflict("the assignment has already ended", data={"assignment_id": assignment_id})
            pos, person = int(row.position_id), int(row.person_id)
            still = await conn.execute(
                select(assignments.c.id).where(
                    assignments.c.person_id == person, assignments.c.position_id == pos, assignments.c.end_at.is_(None)
                )
            )
            lost: dict[int, tuple[list[int], list[int]]] = {} if still.first() is not None else {person: ([], [pos])}
            after = await self.hooks.holders_changed(conn, lost, self._clock.now())
            entry = self.audit(actor, "org.assignment_ended", idx.position_unit(k), assignment_id=assignment_id,
                               position_id=int(row.position_id), person_id=int(row.person_id))  # fmt: skip
            await record(conn, entry, at)
        await self.committed()
        for done in after:
            done()
        return AssignmentView(assignment_id, int(row.person_id), int(row.position_id), str(row.kind), row.start_at, at)

    @checked_fresh
    async def handover(
        self,
        actor: Actor,
        position_id: int,
        to_person_id: int,
        *,
        at: datetime | None = None,
        seat_reserved: bool = False,
    ) -> Handed:
        """Move a position to another person: end the current primary assignments, start a new one.

        History is kept (ended rows stay); whatever the position owns follows it, and the unread notices
        owed through it pass to the new holder (``OrgHooks.handed``), in the same transaction. Handing it
        to its one primary holder is refused (``Conflict``, nothing written): it ended and restarted their
        assignment and wrote a handover note into every thread of the position, with nobody changed.

        Why the time and the previous holders are read under the version lock: two handovers of one
        position at once (two processes, 广西 audit) each took its time before waiting for the lock, so the
        one that committed second could end the first one's assignment before it started; and the answer's
        ``previous_holders`` and the notices' transfer, read from the index before the lock and run after the
        commit, named the predecessor both had seen: the notices went to the holder who had just been
        replaced, and the answer named someone who no longer held the position.
        """
        idx = self.index
        k = access_position(idx, actor, position_id)
        await self.authorize(actor, Perm.ASSIGNMENTS, idx.position_unit(k), "org.handover", position_id=position_id)
        if not seat_reserved:
            await self._refuse_reserved(actor, k, "org.handover", position_id)
        async with self._db.write() as conn:
            # The version row lock comes first: concurrent handovers of one position serialise here.
            await refuse_stale(conn, await bump_version(conn, self._clock, scope="holders",
                                                        position_ids=[position_id], detail="handover"))  # fmt: skip
            when = at or self._clock.now()
            await _require_live_position(conn, position_id)
            await _require_person(conn, to_person_id)
            primaries = sorted({int(r[0]) for r in await conn.execute(
                select(assignments.c.person_id).where(
                    assignments.c.position_id == position_id,
                    assignments.c.end_at.is_(None),
                    assignments.c.kind == "primary",
                )
            )})  # fmt: skip
            if primaries == [to_person_id]:
                raise Conflict("the person already holds this position", data={"person_id": to_person_id})
            ended = await conn.execute(
                update(assignments)
                .where(
                    assignments.c.position_id == position_id,
                    assignments.c.end_at.is_(None),
                    (assignments.c.kind == "primary") | (assignments.c.person_id == to_person_id),
                )
                .values(end_at=when)
                .returning(assignments.c.person_id)
            )
            previous = sorted({int(r[0]) for r in ended})
            aid = await _start_assignment(conn, to_person_id, position_id, "primary", when)
            seats: dict[int, tuple[list[int], list[int]]] = {
                p: ([], [position_id]) for p in previous if p != to_person_id
            }
            # Also when they held it as deputy or acting: they are its primary holder now.
            seats[to_person_id] = ([position_id], [])
            after = await self.hooks.holders_changed(conn, seats, self._clock.now())
            moved, handed = await self.hooks.handed_over(conn, position_id, primaries, to_person_id, when)
            entry = self.audit(actor, "org.handover", idx.position_unit(k), position_id=position_id,
                               to_person_id=to_person_id, previous=previous, assignment_id=aid)  # fmt: skip
            await record(conn, entry, self._clock.now())
        await self.committed()
        for done in [*after, *handed]:
            done()
        return Handed(aid, to_person_id, position_id, "primary", when, None, primaries, moved)


async def _start_assignment(conn: Any, person_id: int, position_id: int, kind: str, at: datetime) -> int:
    """Insert a current (open-ended) assignment; its id."""
    res = await conn.execute(
        insert(assignments)
        .values(person_id=person_id, position_id=position_id, kind=kind, start_at=at, end_at=None)
        .returning(assignments.c.id)
    )
    return int(res.scalar_one())


async def _require_live_position(conn: Any, position_id: int) -> None:
    """Under the version lock: the position was not retired since the index the caller was checked against.

    Until 2026-12-05 (广西 audit) a position retired on another process a moment before could be
    handed over or assigned: an open assignment on a retired position, whose holder was told of it
    (``positions.changed``) while no index listed it.
    """
    row = (await conn.execute(select(positions.c.removed_at).where(positions.c.id == position_id))).first()
    if row is None or row[0] is not None:
        raise NotFound("no such position", data={"position_id": position_id})


async def _require_person(conn: Any, person_id: int) -> None:
    row = (await conn.execute(select(persons.c.disabled).where(persons.c.id == person_id))).first()
    if row is None or row[0]:
        raise NotFound("no such person", data={"person_id": person_id})


def _assignment(row: Any) -> AssignmentView:
    return AssignmentView(
        int(row.id), int(row.person_id), int(row.position_id), str(row.kind), row.start_at, row.end_at
    )
