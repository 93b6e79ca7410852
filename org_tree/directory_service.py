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
unit.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from kernel.db.database import Database
from kernel.schema import persons
from org_tree.directory import Directory
from org_tree.grants import Perm, holds_grant
from org_tree.holder import Applied, OrgIndexHolder
from org_tree.index import OrgIndex
from org_tree.jurisdiction import Actor
from org_tree.resolution import VacancyPolicy, resolve_slots
from org_tree.search import DirectoryHit, DirectoryPage, Fallback, Holder, search

logger = logging.getLogger(__name__)

__all__ = ["DirectoryService"]


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
        phones = await self._phones(actor, index, slots)
        hits = tuple(self._hit(index, d, k, phones) for k in slots)
        return DirectoryPage(total, offset, hits, truncated)

    async def _phones(self, actor: Actor, index: OrgIndex, slots: list[int]) -> dict[int, str | None]:
        """Phones of the holders on the page whose unit the actor administers (none for ordinary users)."""
        if not actor.grants:
            return {}
        wanted: set[int] = set()
        for k in slots:
            u = index.position_unit(k)
            if holds_grant(index, actor, Perm.ASSIGNMENTS, u) or holds_grant(index, actor, Perm.AUDIT, u):
                wanted.update(index.primary_holders(k))
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
            holders=tuple(d.person_name(p) for p in primary),
            holder_details=tuple(Holder(p, d.person_name(p), phones.get(p)) for p in primary),
            vacant=not primary,
            fallback=fallback,
        )
