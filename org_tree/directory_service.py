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
unit — and over every other unit where that person holds a position or a grant, so an
administrator who seats someone (say another county's head) as a deputy in
their own county does not learn their phone by it (the rule of
``PATCH /api/v1/org/persons/{id}``). One person by id (``person``) follows the
same rules: a current holder is public, anyone else only to themselves and to
whole-tree administrators.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from kernel.db.database import Database
from kernel.errors import NotFound, Unavailable
from kernel.schema import persons
from org_tree.directory import Directory
from org_tree.grants import Perm, grant_reach, holds_grant
from org_tree.holder import Applied, OrgIndexHolder
from org_tree.index import OrgIndex
from org_tree.jurisdiction import Actor
from org_tree.org_schema import assignments
from org_tree.resolution import VacancyPolicy, resolve_slots
from org_tree.search import DirectoryHit, DirectoryPage, Fallback, Holder, PlacedPosition, search

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_WAIT", "DirectoryService", "HeldPosition", "PersonCard"]

#: Seconds a search waits for the directory being built before it is answered ``503 unavailable``.
DEFAULT_WAIT = 10.0
#: ``retry_after`` (seconds) of that answer.
RETRY_AFTER = 5


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

    def __init__(
        self, db: Database, holder: OrgIndexHolder, policy: VacancyPolicy, *, wait: float = DEFAULT_WAIT
    ) -> None:
        self._db = db
        self._holder = holder
        self._policy = policy
        self._directory: Directory | None = None
        self._pending: list[Applied] | None = None  # what the index applied while a build runs
        self._building: asyncio.Task[Directory] | None = None
        self._warm = False
        #: Seconds a search waits for a build in progress before ``503 unavailable``.
        self.wait = wait
        #: Builds completed (tests and benchmarks: started over after an index rebuild counts once).
        self.builds = 0
        holder.listen(self._on_applied)

    @property
    def loaded(self) -> Directory | None:
        return self._directory

    @property
    def building(self) -> bool:
        """A build is in progress (started by a search, by ``warm``, or after an index rebuild when warmed)."""
        return self._building is not None and not self._building.done()

    def warm(self) -> None:
        """Build now in the background, and again after every index rebuild (a server at start-up).

        Why: without it the first search of a process (and the first after a rebuild) built the
        directory while its user waited — 6.4 s on a province, minutes on the country.
        """
        self._warm = True
        if self._directory is None:
            _ = self._start()  # awaited by the searches that come before it ends

    async def close(self) -> None:
        """Stop a build in progress (shutdown); its thread finishes its part, the result is dropped."""
        task, self._building = self._building, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def directory(self) -> Directory:
        """The directory; built on first use unless warmed, and again after an index rebuild.

        Raises:
            Unavailable: still being built after ``wait`` seconds (``retry_after`` in ``data``).
        """
        if self._directory is not None:
            return self._directory
        task = self._start()
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.wait)
        except TimeoutError:
            raise Unavailable(
                "the directory is being built; try again shortly", data={"retry_after": RETRY_AFTER}
            ) from None

    def _start(self) -> asyncio.Task[Directory]:
        if self._building is None or self._building.done():
            self._building = asyncio.create_task(self._build(), name="directory-build")
            self._building.add_done_callback(_log_failure)
        return self._building

    async def _build(self) -> Directory:
        """Build from the current index; start over when the index is rebuilt meanwhile.

        What the index applies while the build runs is queued (``_on_applied``) and patched in
        after, so nothing committed in between is missed; patches are idempotent, so one the
        build's copy already had does no harm. A rebuilt index has other unit handles: a
        directory built from the old one would name the wrong units, so it is dropped.
        """
        try:
            while True:
                index = self._holder.index
                pending: list[Applied] = []
                self._pending = pending
                built = await Directory.load(self._db, index)
                done = 0
                while done < len(pending) and not pending[done].rebuilt and self._holder.index is index:
                    await self._patch(built, index, pending[done])
                    done += 1
                if done == len(pending) and self._holder.index is index:
                    # no await from the check to here: nothing can be applied in between
                    self._directory = built
                    self.builds += 1
                    return built
                logger.info("directory: the org index was rebuilt during the build; building again")
        finally:
            self._pending = None

    async def _on_applied(self, index: OrgIndex, applied: Applied) -> None:
        if self._pending is not None:  # a build is running: it applies this after (or starts over)
            self._pending.append(applied)
            return
        if applied.rebuilt:
            self._directory = None  # built again from the new index: now if warmed, else on next use
            if self._warm:
                _ = self._start()
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
        while d is not self._directory:  # dropped by an index rebuild between its build and this turn
            d = await self.directory()
        index = self._holder.index  # the one it was built from and patched with: a rebuild drops it at once
        total, slots, truncated = search(index, d, query, offset=offset, limit=limit)
        phones = await self._phones(actor, index, d, slots)
        hits = tuple(self._hit(index, d, k, phones) for k in slots)
        return DirectoryPage(total, offset, hits, truncated)

    async def _phones(self, actor: Actor, index: OrgIndex, d: Directory, slots: list[int]) -> dict[int, str | None]:
        """Phones of the holders on the page the actor administers (none for ordinary users)."""
        if not actor.grants:
            return {}
        held: dict[int, list[int]] = {}
        for k in slots:
            if _administers(index, actor, index.position_unit(k)):
                held.update((p, _held_slots(index, d, p)) for p in index.current_holders(k) if p not in held)
        if not held:
            return {}
        async with self._db.read() as conn:
            reach = await grant_reach(conn, index, held)
            wanted = sorted(p for p, ks in held.items() if _phone_shown(index, actor, ks, reach[p]))
            if not wanted:
                return {}
            rows = await conn.execute(select(persons.c.id, persons.c.phone).where(persons.c.id.in_(wanted)))
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
        async with self._db.read() as conn:
            row = (await conn.execute(select(persons.c.name, persons.c.phone).where(persons.c.id == person_id))).first()
            # Every position they ever held (a handful), kept where the index says they hold it now: the
            # answer the directory's person → positions gave, without the directory (a process's first
            # lookup built all of it: seconds on a province).
            ever = await conn.scalars(select(assignments.c.position_id).where(assignments.c.person_id == person_id))
            position_ids = {int(pid) for pid in ever}
            index = self._holder.index
            reach = (await grant_reach(conn, index, [person_id]))[person_id]
        slots = _holding(index, person_id, position_ids)
        held: list[HeldPosition] = []
        for k in slots:
            pid = index.position_id(k)
            kind = "primary" if person_id in index.primary_holders(k) else dict(index.alternate_holders(k))[person_id]
            u = index.position_unit(k)
            role = index.position_role(k)
            path = tuple(index.unit_path(u))
            title = index.position_title(k)
            held.append(HeldPosition(pid, role.name, role.key, index.unit_id(u), index.unit_code(u), path, title, kind))
        if row is None or (not held and person_id != actor.person_id and not _administers(index, actor, None)):
            raise NotFound("no such person", data={"person_id": person_id})
        shown = _phone_shown(index, actor, slots, reach)
        held.sort(key=lambda p: (len(p.unit_path), p.position_id))
        return PersonCard(person_id, str(row[0]), str(row[1]) if shown and row[1] is not None else None, tuple(held))


def _administers(index: OrgIndex, actor: Actor, u: int | None) -> bool:
    """``assignments`` or ``audit`` over unit ``u`` (``None``: the whole tree): who sees holders' phones."""
    return holds_grant(index, actor, Perm.ASSIGNMENTS, u) or holds_grant(index, actor, Perm.AUDIT, u)


def _phone_shown(index: OrgIndex, actor: Actor, slots: list[int], grants: list[int | None]) -> bool:
    """A person's phone, given the slots they hold and their grants' units (:func:`grant_reach`): to
    administrators over every such unit (neither: the whole tree), as for changing them."""
    units: list[int | None] = [index.position_unit(k) for k in slots]
    return all(_administers(index, actor, u) for u in [*units, *grants] or [None])


def _held_slots(index: OrgIndex, d: Directory, person: int) -> list[int]:
    """The slots of the positions ``person`` holds now (primary, deputy or acting), through the directory."""
    return _holding(index, person, d.positions_of(person))


def _holding(index: OrgIndex, person: int, position_ids: Iterable[int]) -> list[int]:
    """The slots of those of ``position_ids`` that ``person`` holds now, as the index says."""
    slots = (index.find_slot(pid) for pid in position_ids)
    return [k for k in slots if k >= 0 and index.holds_slot(k, person)]


def _log_failure(task: asyncio.Task[Directory]) -> None:
    """A failed build is logged (a background one has nobody awaiting it); the next search starts another."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.warning("directory build failed: %r", exc)
