"""The directory of this process: built once, then patched from the org change log, and searched.

Why a listener of ``OrgIndexHolder``: the index and the directory must move
together. Every refresh that patches the index hands the directory what it
applied (new and renamed units, changed holders, renamed persons); a rebuild
of the index rebuilds the directory too. While the directory is being built
(its first search, or after a rebuild) what arrives is queued and applied
after, so nothing committed in between is missed.

Access (docs/directory.md): the directory is public to every signed-in
person — positions, units, holders' names; a holder's **phone** is shown only
to administrators holding ``assignments`` or ``audit`` over the position's
unit — and over every other unit where that person holds a position, so an
administrator who seats someone (say another county's head) as a deputy in
their own county does not learn their phone by it (the rule of
``PATCH /api/v1/org/persons/{id}``). One person by id (``person``) follows the
same rules: a current holder is public, anyone else only to themselves and to
whole-tree administrators.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import select

from kernel.db.database import Database
from kernel.errors import NotFound
from kernel.schema import persons
from org_tree.directory import Directory
from org_tree.grants import Perm, holds_grant
from org_tree.holder import Applied, OrgIndexHolder
from org_tree.index import OrgIndex
from org_tree.jurisdiction import Actor
from org_tree.resolution import VacancyPolicy, resolve_slots
from org_tree.search import DirectoryHit, DirectoryPage, Fallback, Holder, PlacedPosition, search

logger = logging.getLogger(__name__)

__all__ = ["DirectoryService", "HeldPosition", "PersonCard"]


@dataclass(frozen=True, slots=True)
class HeldPosition(PlacedPosition):
    """A position a person holds now, and how (``primary``, ``deputy`` or ``acting``)."""

    kind: str


@dataclass(frozen=True, slots=True)
class PersonCard:
    """One person as the directory shows them (``GET /api/v1/org/persons/{id}``)."""

    id: int
    name: str
    phone: str | None
    positions: tuple[HeldPosition, ...]


class DirectoryService:
    """Owns this process's ``Directory`` (see the module docstring)."""

    def __init__(self, db: Database, holder: OrgIndexHolder, policy: VacancyPolicy) -> None:
        self._db = db
        self._holder = holder
        self._policy = policy
        self._directory: Directory | None = None
        self._pending: list[Applied] | None = None
        self._lock = asyncio.Lock()
        holder.listen(self._on_applied)

    @property
    def loaded(self) -> Directory | None:
        return self._directory

    async def directory(self) -> Directory:
        """The directory, built on first use (and after an index rebuild)."""
        if self._directory is not None:
            return self._directory
        async with self._lock:
            if self._directory is None:
                self._pending = []
                try:
                    built = await Directory.load(self._db, self._holder.index)
                    for applied in self._pending:
                        await self._patch(built, self._holder.index, applied)
                finally:
                    self._pending = None
                self._directory = built
        return self._directory

    async def _on_applied(self, index: OrgIndex, applied: Applied) -> None:
        if self._pending is not None:
            self._pending.append(applied)
        if applied.rebuilt:
            self._directory = None  # built again on next use, from the new index
            return
        if self._directory is not None:
            await self._patch(self._directory, index, applied)

    async def _patch(self, d: Directory, index: OrgIndex, applied: Applied) -> None:
        for op in applied.ops:
            kind = op["op"]
            if kind in ("unit_create", "unit_rename"):
                u = index.find_unit(int(op["unit"]))
                if u >= 0:
                    d.set_unit_name(u, str(op["name"]), index.unit_level(u))
            elif kind == "person":
                d.set_person_name(int(op["person"]), str(op["name"]))
        held: list[tuple[int, int]] = []
        for pid in applied.holder_positions:
            k = index.find_slot(pid)
            if k >= 0:
                held.extend((person, pid) for person in index.current_holders(k))
        unknown = sorted({p for p, _ in held if not d.knows(p)})
        if unknown:
            async with self._db.read() as conn:
                for i in range(0, len(unknown), 1000):
                    rows = await conn.execute(
                        select(persons.c.id, persons.c.name).where(persons.c.id.in_(unknown[i : i + 1000]))
                    )
                    for person, name in rows:
                        d.set_person_name(int(person), str(name))
        for person, pid in held:
            d.add_holding(person, pid)
        d.version = applied.version

    async def search(self, actor: Actor, query: str, *, offset: int = 0, limit: int = 20) -> DirectoryPage:
        d = await self.directory()
        index = self._holder.index
        total, slots, truncated = search(index, d, query, offset=offset, limit=limit)
        phones = await self._phones(actor, index, d, slots)
        hits = tuple(self._hit(index, d, k, phones) for k in slots)
        return DirectoryPage(total, offset, hits, truncated)

    async def _phones(self, actor: Actor, index: OrgIndex, d: Directory, slots: list[int]) -> dict[int, str | None]:
        """Phones of the holders on the page the actor administers (none for ordinary users)."""
        if not actor.grants:
            return {}
        wanted: set[int] = set()
        for k in slots:
            if _administers(index, actor, index.position_unit(k)):
                wanted.update(p for p in index.current_holders(k) if _phone_shown(index, d, actor, p))
        if not wanted:
            return {}
        async with self._db.read() as conn:
            rows = await conn.execute(select(persons.c.id, persons.c.phone).where(persons.c.id.in_(sorted(wanted))))
            return {int(p): (str(ph) if ph is not None else None) for p, ph in rows}

    def _hit(self, index: OrgIndex, d: Directory, k: int, phones: dict[int, str | None]) -> DirectoryHit:
        u = index.position_unit(k)
        role = index.position_role(k)
        primary = index.primary_holders(k)
        fallback = None
        if not primary:
            aud = resolve_slots(index, [k], self._policy)
            fb = aud.fallbacks[0] if aud.fallbacks else None
            names = tuple(dict.fromkeys(d.person_name(p) for p in aud.person_ids))
            if fb is not None:
                fallback = Fallback(fb.reason, fb.via_position_id, names)
        return DirectoryHit(
            position_id=index.position_id(k),
            role=role.name,
            role_key=role.key,
            unit_id=index.unit_id(u),
            unit_code=index.unit_code(u),
            unit_path=tuple(index.unit_path(u)),
            title=index.position_title(k),
            holders=tuple(d.person_name(p) for p in primary),
            holder_details=tuple(
                [Holder(p, d.person_name(p), phones.get(p)) for p in primary]
                + [Holder(p, d.person_name(p), phones.get(p), kind) for p, kind in index.alternate_holders(k)]
            ),
            vacant=not primary,
            fallback=fallback,
        )

    async def person(self, actor: Actor, person_id: int) -> PersonCard:
        """One person: their name, the positions they hold now, and their phone for administrators.

        Visible as in 找岗位: a person holding a position (any kind) to every signed-in person; one
        holding none only to themselves and to administrators with ``assignments`` or ``audit`` over
        the whole tree. The phone as on a directory hit: administrators (``assignments`` or ``audit``)
        over the unit of every position they hold; for a person holding none, over the whole tree.

        Raises:
            NotFound: no such person, or one the actor may not see (the same answer).
        """
        d = await self.directory()
        index = self._holder.index
        held: list[HeldPosition] = []
        for k in _held_slots(index, d, person_id):
            pid = index.position_id(k)
            kind = "primary" if person_id in index.primary_holders(k) else dict(index.alternate_holders(k))[person_id]
            u = index.position_unit(k)
            role = index.position_role(k)
            path = tuple(index.unit_path(u))
            title = index.position_title(k)
            held.append(HeldPosition(pid, role.name, role.key, index.unit_id(u), index.unit_code(u), path, title, kind))
        if not held and person_id != actor.person_id and not _administers(index, actor, None):
            raise NotFound("no such person", data={"person_id": person_id})
        async with self._db.read() as conn:
            row = (await conn.execute(select(persons.c.name, persons.c.phone).where(persons.c.id == person_id))).first()
        if row is None:
            raise NotFound("no such person", data={"person_id": person_id})
        shown = _phone_shown(index, d, actor, person_id)
        held.sort(key=lambda p: (len(p.unit_path), p.position_id))
        return PersonCard(person_id, str(row[0]), str(row[1]) if shown and row[1] is not None else None, tuple(held))


def _administers(index: OrgIndex, actor: Actor, u: int | None) -> bool:
    """``assignments`` or ``audit`` over unit ``u`` (``None``: the whole tree): who sees holders' phones."""
    return holds_grant(index, actor, Perm.ASSIGNMENTS, u) or holds_grant(index, actor, Perm.AUDIT, u)


def _phone_shown(index: OrgIndex, d: Directory, actor: Actor, person: int) -> bool:
    """A person's phone: to administrators over every unit where they hold a position (whole tree: none)."""
    units = [index.position_unit(k) for k in _held_slots(index, d, person)]
    if not units:
        return _administers(index, actor, None)
    return all(_administers(index, actor, u) for u in units)


def _held_slots(index: OrgIndex, d: Directory, person: int) -> list[int]:
    """The slots of the positions ``person`` holds now (primary, deputy or acting)."""
    slots = (index.find_slot(pid) for pid in d.positions_of(person))
    return [k for k in slots if k >= 0 and index.holds_slot(k, person)]
