"""Administrators: who may change the org, and where.

An **admin grant** gives a *person* a set of permissions over one unit's
subtree (or the whole tree). Holding a position gives no right to rearrange
the org: only a covering grant does (docs/admin.md).

Why persons, not positions: an administrator is a designated, trusted
individual (DingTalk's 主管理员 / 子管理员), vetted and answerable by name. A
grant on a position would pass to whoever is next handed that position, and
handing positions over is itself an administrative act, so a position-held
grant would let the right to administer travel by the very act it guards.
A person-held grant ends only when revoked, and every grant and revocation is
in the audit log.

:func:`require_grant` / :func:`holds_grant` is the one place any endpoint (in
``zzd`` or ``apps``) asks "does this actor hold permission P over unit U".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.errors import BadRequest, ErrorCode, Forbidden, NotFound
from org_tree.index import OrgIndex
from org_tree.org_schema import admin_grants

if TYPE_CHECKING:
    from org_tree.jurisdiction import Actor

logger = logging.getLogger(__name__)

__all__ = [
    "ALL_PERMS",
    "Grant",
    "Perm",
    "active_grants",
    "grant_unit",
    "holds_grant",
    "parse_perms",
    "require_grant",
    "unit_path_of",
]


class Perm(StrEnum):
    """What a grant allows (docs/admin.md has the endpoint table)."""

    #: Units and positions: create, move.
    ORG = "org"
    #: Who holds positions: assign, end an assignment, hand over.
    ASSIGNMENTS = "assignments"
    #: The role catalog (tree-wide: needs a whole-tree grant).
    ROLES = "roles"
    #: Task categories and other settings (tree-wide).
    SETTINGS = "settings"
    #: Third-party apps and their credentials.
    APPS = "apps"
    #: Read the audit log of the subtree.
    AUDIT = "audit"
    #: Give and revoke grants within one's own grants.
    GRANTS = "grants"


ALL_PERMS: frozenset[str] = frozenset(p.value for p in Perm)


@dataclass(frozen=True, slots=True)
class Grant:
    """Permissions ``perms`` over the subtree of unit ``unit_id`` (None: the whole tree)."""

    id: int
    person_id: int
    unit_id: int | None
    perms: frozenset[str]

    def covers(self, index: OrgIndex, u: int | None) -> bool:
        """Whether the grant's subtree holds pre-order unit ``u`` (``None``: the whole tree)."""
        if self.unit_id is None:
            return True
        if u is None:
            return False
        try:
            g = index.unit(self.unit_id)
        except NotFound:
            return False  # the unit was dissolved: the grant covers nothing
        return index.contains(g, u)

    def to_dict(self, index: OrgIndex | None = None) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id, "person_id": self.person_id, "unit_id": self.unit_id, "perms": sorted(self.perms),
        }  # fmt: skip
        if index is not None and self.unit_id is not None:
            try:
                out["unit_path"] = index.unit_path(index.unit(self.unit_id))
            except NotFound:
                out["unit_path"] = None
        return out


def parse_perms(raw: Iterable[str]) -> frozenset[str]:
    """Validate permission names (``BadRequest`` naming the unknown ones)."""
    perms = frozenset(str(p).strip().lower() for p in raw)
    unknown = sorted(perms - ALL_PERMS)
    if unknown or not perms:
        raise BadRequest(
            f"perms must be a non-empty subset of {', '.join(sorted(ALL_PERMS))}",
            data={"field": "perms", "unknown": unknown},
        )
    return perms


def holds_grant(index: OrgIndex, actor: Actor, perm: Perm | str, u: int | None = None) -> bool:
    """Does ``actor`` hold ``perm`` over pre-order unit ``u`` (``None``: over the whole tree)?"""
    return any(str(perm) in g.perms and g.covers(index, u) for g in actor.grants)


def require_grant(index: OrgIndex, actor: Actor, perm: Perm | str, u: int | None = None) -> None:
    """Raise ``Forbidden`` (code ``no_grant``) unless :func:`holds_grant`.

    The refusal names the permission and the unit asked for, never what lies
    inside it, so it tells nothing the public directory does not.
    """
    if holds_grant(index, actor, perm, u):
        return
    data: dict[str, object] = {"permission": str(perm)}
    data["unit_id"] = index.unit_id(u) if u is not None else None
    raise Forbidden(
        f"this needs the '{perm}' permission over {'that unit' if u is not None else 'the whole tree'}",
        code=ErrorCode.NO_GRANT,
        data=data,
    )


def unit_path_of(index: OrgIndex, u: int | None) -> tuple[int | None, str | None]:
    """``(unit id, "/root id/…/unit id/")`` of pre-order unit ``u`` for the audit log."""
    if u is None:
        return None, None
    ids = [index.unit_id(a) for a in reversed(list(index.ancestors(u)))] + [index.unit_id(u)]
    return index.unit_id(u), "/" + "/".join(str(i) for i in ids) + "/"


def grant_unit(index: OrgIndex, grant: Grant) -> int | None:
    """The pre-order unit of a grant (``None`` for whole-tree grants or dissolved units)."""
    if grant.unit_id is None:
        return None
    try:
        return index.unit(grant.unit_id)
    except NotFound:
        return None


def _grant(row: object) -> Grant:
    m = row._mapping  # type: ignore[attr-defined]
    perms = frozenset(p for p in str(m["perms"]).split(",") if p)
    return Grant(int(m["id"]), int(m["person_id"]), None if m["unit_id"] is None else int(m["unit_id"]), perms)


async def active_grants(conn: AsyncConnection, person_id: int | None = None) -> list[Grant]:
    """Unrevoked grants (of one person, or all), oldest first."""
    q = select(admin_grants).where(admin_grants.c.revoked_at.is_(None)).order_by(admin_grants.c.id)
    if person_id is not None:
        q = q.where(admin_grants.c.person_id == person_id)
    return [_grant(r) for r in await conn.execute(q)]


async def grant_reach(conn: AsyncConnection, index: OrgIndex, person_ids: Iterable[int]) -> dict[int, list[int | None]]:
    """Per person, the pre-order unit of each unrevoked grant of theirs (``None``: the whole tree, or a unit
    gone from the tree, which only a whole-tree administrator answers for).

    Why: whoever changes a person, or sees their phone, must administer every unit where they hold a
    position *and* every unit of their grants; positions alone let a county administrator who seated the
    whole-tree administrator (who holds no position) as a deputy there count as covering them.
    """
    wanted = sorted(set(person_ids))
    out: dict[int, list[int | None]] = {p: [] for p in wanted}
    if not wanted:
        return out
    q = select(admin_grants.c.person_id, admin_grants.c.unit_id).where(
        admin_grants.c.revoked_at.is_(None), admin_grants.c.person_id.in_(wanted)
    )
    for pid, uid in await conn.execute(q):
        u = index.find_unit(int(uid)) if uid is not None else -1
        out[int(pid)].append(u if u >= 0 else None)
    return out


async def insert_grant(
    conn: AsyncConnection, person_id: int, unit_id: int | None, perms: frozenset[str], by: int | None, at: object
) -> Grant:
    res = await conn.execute(
        insert(admin_grants)
        .values(person_id=person_id, unit_id=unit_id, perms=",".join(sorted(perms)), granted_by=by, created_at=at)
        .returning(admin_grants.c.id)
    )
    return Grant(int(res.scalar_one()), person_id, unit_id, perms)


async def mark_revoked(conn: AsyncConnection, grant_id: int, by: int | None, at: object) -> Grant | None:
    """Revoke; returns the grant as it was, or None when unknown or already revoked."""
    row = (
        await conn.execute(
            select(admin_grants).where(admin_grants.c.id == grant_id, admin_grants.c.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    await conn.execute(update(admin_grants).where(admin_grants.c.id == grant_id).values(revoked_at=at, revoked_by=by))
    return _grant(row)
