"""Giving and revoking admin grants, with the rule that nobody hands out more than they hold.

Why the rules: a sub-administrator may appoint helpers inside their own
subtree, but never widen anyone's rights beyond their own, never raise
themselves, and never revoke an administrator whose rights they do not
themselves cover (DingTalk's sub-administrators cannot manage their peers).
The operator at the command line (``zzd admin grant``) creates the first one.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.audit import record
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import for_update
from kernel.errors import Conflict, Forbidden, NotFound
from kernel.schema import persons
from org_tree.grants import Grant, Perm, active_grants, grant_unit, holds_grant, insert_grant, mark_revoked
from org_tree.holder import OrgIndexHolder
from org_tree.jurisdiction import Actor
from org_tree.org_schema import units
from org_tree.org_service import OrgService

logger = logging.getLogger(__name__)

__all__ = ["GrantService"]


class GrantService:
    def __init__(self, db: Database, clock: Clock, holder: OrgIndexHolder, org: OrgService) -> None:
        self._db = db
        self._clock = clock
        self._holder = holder
        self._org = org

    async def grant(self, actor: Actor, person_id: int, unit: int | str | None, perms: frozenset[str]) -> Grant:
        """Give ``person_id`` ``perms`` over ``unit``'s subtree (``None``: whole tree).

        Raises:
            Forbidden: ``no_grant`` — the actor lacks ``grants`` or one of ``perms`` there; or a self-grant.
            NotFound: unknown unit or person.
            Conflict: the person already holds exactly this grant (same unit, same perms): ``data.grant_id``
                names it. A second identical row would change nothing but need revoking twice.
        """
        idx = self._holder.index
        u = idx.unit(unit) if unit is not None else None
        await self._org.authorize(actor, Perm.GRANTS, u, "admin.granted", person_id=person_id, perms=sorted(perms))
        for p in sorted(perms):
            await self._org.authorize(actor, Perm(p), u, "admin.granted", person_id=person_id, perms=sorted(perms))
        if person_id == actor.person_id:
            await self._org.deny(actor, Perm.GRANTS, u, "admin.granted", person_id=person_id, perms=sorted(perms),
                                 reason="self")  # fmt: skip
            raise Forbidden("administrators cannot grant themselves rights", data={"person_id": person_id})
        unit_id = idx.unit_id(u) if u is not None else None
        now = self._clock.now()
        async with self._db.write() as conn:
            # The person's row lock makes two identical grants at once commit one after the other (PostgreSQL).
            q = select(persons.c.disabled).where(persons.c.id == person_id)
            row = (await conn.execute(for_update(conn, q))).first()
            if row is None or row[0]:
                raise NotFound("no such person", data={"person_id": person_id})
            same = [g for g in await active_grants(conn, person_id) if g.unit_id == unit_id and g.perms == perms]
            if same:
                raise Conflict("the person already holds this grant", data={"grant_id": same[0].id})
            g = await insert_grant(conn, person_id, unit_id, perms, actor.person_id or None, now)
            entry = self._org.audit(actor, "admin.granted", u, grant_id=g.id, person_id=person_id, perms=sorted(perms))
            await record(conn, entry, now)
        return g

    async def revoke(self, actor: Actor, grant_id: int) -> Grant:
        """Revoke a grant the actor covers (``grants`` and every one of its perms over its unit).

        Raises:
            NotFound: unknown, already revoked, or not the actor's to revoke (alike, so ids cannot be probed).
        """
        idx = self._holder.index
        missing = NotFound("no such grant", data={"grant_id": grant_id})
        async with self._db.read() as conn:
            found = [g for g in await active_grants(conn) if g.id == grant_id]
            u = await self._answering_unit(conn, found[0]) if found else None
        # A refusal is on record whether the id exists or not, and says no more than the 404 does (the
        # permission is always ``grants``, not the grant's first one the actor lacks): the actor's own
        # auditors see it too, and an administrator who also audits could otherwise read back which ids
        # exist and where (``hidden``, docs/admin.md "Refusals seen from both sides").
        if not found:
            await self._org.deny(actor, Perm.GRANTS, None, "admin.revoked", grant_id=grant_id, hidden=True)
            raise missing
        g = found[0]
        if not all(holds_grant(idx, actor, Perm(p), u) for p in {Perm.GRANTS.value, *g.perms}):
            await self._org.deny(actor, Perm.GRANTS, u, "admin.revoked", grant_id=grant_id, hidden=True)
            raise missing
        now = self._clock.now()
        async with self._db.write() as conn:
            before = await mark_revoked(conn, grant_id, actor.person_id or None, now)
            if before is None:
                raise missing
            entry = self._org.audit(actor, "admin.revoked", u, grant_id=grant_id, person_id=g.person_id,
                                    perms=sorted(g.perms))  # fmt: skip
            await record(conn, entry, now)
        return before

    async def visible(self, actor: Actor, person_id: int | None = None) -> list[Grant]:
        """Grants the actor may list: their own, and those inside a subtree where they hold ``grants`` or ``audit``."""
        idx = self._holder.index
        out = []
        async with self._db.read() as conn:
            grants = [(g, await self._answering_unit(conn, g)) for g in await active_grants(conn, person_id)]
        for g, u in grants:
            mine = g.person_id == actor.person_id
            if mine or any(holds_grant(idx, actor, p, u) for p in (Perm.GRANTS, Perm.AUDIT)):
                out.append(g)
        return out

    async def _answering_unit(self, conn: AsyncConnection, g: Grant) -> int | None:
        """The pre-order unit whose administrators answer for grant ``g`` (``None``: the whole tree's).

        Its own unit while that is in the tree. A grant over a unit retired since covers nothing, but it
        stays active and comes back with the unit (``--revive-retired``, or a unit the import dissolved
        that the files list again): the nearest unit above it still in the tree answers for it, so the
        county that gave it sees and revokes it. Before, only a whole-tree administrator could.
        """
        idx = self._holder.index
        u = grant_unit(idx, g)
        at = g.unit_id if u is None else None
        for _ in range(64):  # a parent chain, bounded however the rows were edited
            if at is None:
                break
            parent = (await conn.execute(select(units.c.parent_id).where(units.c.id == at))).scalar()
            at = None if parent is None else int(parent)
            if at is not None and idx.find_unit(at) >= 0:
                return idx.find_unit(at)
        return u

    async def require_some_admin(self, actor: Actor) -> None:
        """Listing others' grants is for administrators with ``grants`` or ``audit`` somewhere.

        A refusal is audited (``admin.denied``, ``attempted: grants.read``) like a refused audit read:
        docs/admin.md puts every refused administrative attempt on record, and this one was not.
        """
        if not any(Perm.GRANTS in g.perms or Perm.AUDIT in g.perms for g in actor.grants):
            await self._org.deny(actor, Perm.GRANTS, None, "grants.read")
            raise Forbidden("this needs the 'grants' or 'audit' permission", data={"permission": "grants"})

    @staticmethod
    def describe(g: Grant, holder: OrgIndexHolder) -> dict[str, Any]:
        return g.to_dict(holder.index)
