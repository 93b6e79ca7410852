"""Unit groups (部门群) and the reconciler that keeps derived members in step with the org tree.

Why stored and reconciled rather than derived per read: a unit group is read
and written by thousands, and its member set is the audience of every
message, so it is kept as rows; the org index says what it should be. When
this process's index reaches a new org version, each unit group and each
group with position members is reconciled in its own transaction:

- the conversation row is locked first, and ``member_version`` records the
  org version the rows reflect: a process whose index is older than that
  leaves the group alone (it would undo a newer change), one at the same
  version finds nothing to do — so two processes write the join/leave note
  exactly once (the note's key ``sys:<id>:v<version>:m`` is also unique);
- rows added by a person (source NULL) are never removed here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import insert_ignore
from kernel.errors import BadRequest, Conflict, ErrorCode, Forbidden, NotFound
from kernel.text import check_text, normalize_name
from messaging.conversations.access import load_conversation
from messaging.conversations.groups import pass_ownership
from messaging.conversations.handover import handover_notes, pending_handovers
from messaging.conversations.schema import conversation_positions
from messaging.conversations.service import ConversationService
from messaging.conversations.system import system_message
from messaging.events import NewEvent
from messaging.schema import conversation_members, conversations
from messaging.shapes import ConversationLeft
from messaging.unit_of_work import Txn
from org_tree.index import OrgIndex
from org_tree.jurisdiction import Actor, access_unit, check_manage
from org_tree.org_schema import org_changes, positions, units

logger = logging.getLogger(__name__)

__all__ = ["MemberReconciler", "desired_members"]

MAX_DEPTH = 5
_TARGET_LIMIT = 2_000  # more org changes than this since the last run: look at every derived group


async def retired_positions(conn: AsyncConnection, position_ids: list[int]) -> list[int]:
    """Those of ``position_ids`` retired: by themselves, or with their unit (sorted)."""
    if not position_ids:
        return []
    rows = await conn.execute(
        select(positions.c.id)
        .select_from(positions.join(units, units.c.id == positions.c.unit_id))
        .where(
            positions.c.id.in_(position_ids),
            or_(positions.c.removed_at.is_not(None), units.c.dissolved_at.is_not(None)),
        )
        .order_by(positions.c.id)
    )
    return [int(r[0]) for r in rows]


def desired_members(index: OrgIndex, *, unit_id: int | None, depth: int, position_ids: list[int]) -> set[int]:
    """Holders (primary, deputy, acting) of the unit's positions to ``depth`` levels down, or of ``position_ids``."""
    out: set[int] = set()
    if unit_id is not None:
        try:
            u = index.unit(unit_id)
        except NotFound:
            return out  # dissolved: nobody is a member any more
        for v in index.subtree(u, depth):
            for k in index.unit_slots(v):
                out |= index.current_holders(k)
    for pid in position_ids:
        k = index.find_slot(pid)
        if k >= 0:
            out |= index.current_holders(k)
    return out


class MemberReconciler:
    def __init__(self, conversations: ConversationService, index: Callable[[], OrgIndex]) -> None:
        self._c = conversations
        self._index = index
        self._seen = -1
        #: Conversations whose members changed, and handover notes written (for tests and metrics).
        self.changed = 0
        self.notes = 0

    async def create_unit_group(
        self, actor: Actor, unit: int | str, *, depth: int = 0, title: str | None = None
    ) -> dict[str, Any]:
        """Create the unit's working group; members are then kept by the reconciler.

        Raises:
            Forbidden: the actor neither holds a position in the unit nor manages it; or
                ``depth > 0`` and the actor does not manage it (a seat in the unit is not enough).
            Conflict: ``already_exists`` with the group's id.
        """
        if not 0 <= depth <= MAX_DEPTH:
            raise BadRequest(f"depth must be 0-{MAX_DEPTH}", data={"field": "depth"})
        idx = self._index()
        u = access_unit(idx, actor, unit)
        own = any(k >= 0 and idx.position_unit(k) == u for k in map(idx.find_slot, actor.position_ids))
        if not own or depth > 0:
            # A seat in the unit covers the unit's own group; the units below (depth > 0) are
            # reached only by someone who manages them, as a notice to them would need: a
            # 村妇联执委 (jurisdiction ``unit``) could otherwise open a channel to every grid below.
            try:
                check_manage(idx, actor, u)
            except Forbidden as exc:
                if own:
                    raise Forbidden(
                        "a group reaching the units below (depth > 0) needs a position managing them",
                        data={"field": "depth"},
                    ) from exc
                raise Forbidden("hold a position in the unit, or manage it, to create its group") from exc
        clean = normalize_name(check_text(title, field="title", max_chars=100)) if title else idx.unit_name(u)
        uid = idx.unit_id(u)

        async def change(tx: Txn) -> int:
            conn = tx.conn
            key = f"unit:{uid}"
            row = (await conn.execute(select(conversations.c.id).where(conversations.c.thread_key == key))).first()
            if row is not None:
                raise Conflict(
                    "the unit already has a group", code=ErrorCode.ALREADY_EXISTS, data={"conversation_id": int(row[0])}
                )
            res = await conn.execute(
                insert_ignore(conn, conversations, ["thread_key"]).returning(conversations.c.id),
                [
                    {
                        "kind": "unit",
                        "thread_key": key,
                        "title": clean,
                        "owner_id": actor.person_id,
                        "unit_id": uid,
                        "unit_depth": depth,
                        "created_at": tx.now,
                    }
                ],
            )
            created = res.first()
            if created is None:
                raise Conflict("the unit already has a group", code=ErrorCode.ALREADY_EXISTS)
            return int(created[0])

        cid = await self._c.uow.run(change)
        await self.reconcile(cid)
        async with self._c.db.read() as conn:
            from messaging.conversations.groups import GroupService

            return await GroupService.view(conn, cid)

    async def run(self) -> int:
        """Reconcile the derived groups a new index version may affect; returns groups changed.

        The first run (and any run after a tree change or a burst of more than
        ``_TARGET_LIMIT`` changes) looks at every derived group not yet at this
        version; otherwise only unit groups of the changed positions' units and
        their ancestors, and groups having a changed position as a member.
        """
        idx = self._index()
        # The holder patches this very object in place (org_tree/holder.py): while this pass awaits,
        # its version may move on. The pass covers the changes up to the version it began at and
        # records that one as seen, so the next pass reads what was applied meanwhile.
        version = idx.version
        if version == self._seen:
            return 0
        async with self._c.db.read() as conn:
            scope = await self._affected(conn, idx, version) if self._seen >= 0 else None
            # Without a window of changes (first pass, or a tree change in it), the threads' own
            # marks say which handovers still owe a note (handover.py).
            handovers = scope[1] if scope is not None else await pending_handovers(conn)
            derived = or_(
                conversations.c.kind == "unit",
                conversations.c.id.in_(select(conversation_positions.c.conversation_id)),
            )
            if scope is not None:
                units, changes = scope
                posts = sorted(changes)
                derived = or_(
                    (conversations.c.kind == "unit") & conversations.c.unit_id.in_(units),
                    conversations.c.id.in_(
                        select(conversation_positions.c.conversation_id).where(
                            conversation_positions.c.position_id.in_(posts)
                        )
                    ),
                )
            ids = [
                int(r[0])
                for r in await conn.execute(
                    select(conversations.c.id).where(
                        derived,
                        or_(conversations.c.member_version.is_(None), conversations.c.member_version < version),
                    )
                )
            ]
        changed = 0
        for cid in ids:
            changed += await self.reconcile(cid)
        self.notes += await handover_notes(self._c, handovers, marked_only=scope is None)
        self._seen = version
        return changed

    async def _affected(
        self, conn: AsyncConnection, idx: OrgIndex, version: int
    ) -> tuple[list[int], dict[int, int]] | None:
        """Unit ids and {position id: latest org version} touched by holder changes since the last run, to ``version``.

        None: look at everything (a tree change, or too many changes).
        """
        rows = (
            await conn.execute(
                select(org_changes.c.scope, org_changes.c.position_id, org_changes.c.version, org_changes.c.detail)
                .where(org_changes.c.version > self._seen, org_changes.c.version <= version)
                .limit(_TARGET_LIMIT + 1)
            )
        ).all()
        if len(rows) > _TARGET_LIMIT:
            return None
        units: set[int] = set()
        holder_rows: list[tuple[int, int]] = []
        for sc, p, v, detail in rows:
            if sc == "holders" and p is not None:
                holder_rows.append((int(p), int(v)))
            elif sc == "person" or (sc == "struct" and detail is None):
                continue  # a name, or a structural version's first row: no membership changes
            elif sc != "struct" or not _structural_units(idx, json.loads(str(detail)), units):
                return None  # a tree change, or an edit that moves holders in ways not worked out here
        changes: dict[int, int] = {}
        for p, v in holder_rows:
            changes[p] = max(changes.get(p, 0), v)
        posts = sorted(changes)
        for p in posts:
            k = idx.find_slot(p)
            if k >= 0:
                u = idx.position_unit(k)
                units.add(idx.unit_id(u))
                units.update(idx.unit_id(a) for a in idx.ancestors(u))
        return sorted(units), changes

    async def reconcile(self, cid: int) -> int:
        """Bring one group's derived members to this process's index; 1 when something changed."""
        idx = self._index()

        async def change(tx: Txn) -> int:
            conn, now = tx.conn, tx.now
            conv = await load_conversation(conn, cid, lock=True)
            stored_version = (
                await conn.execute(select(conversations.c.member_version).where(conversations.c.id == cid))
            ).scalar()
            if stored_version is not None and int(stored_version) >= idx.version:
                return 0
            posts = [
                int(r[0])
                for r in await conn.execute(
                    select(conversation_positions.c.position_id).where(conversation_positions.c.conversation_id == cid)
                )
            ]
            # A retired position (its unit's too) leaves the listing as its holders leave the members: nobody
            # holds it again. Read from the database, not the index, which may predate a position just added.
            retired = await retired_positions(conn, posts)
            if retired:
                cp = conversation_positions
                await conn.execute(delete(cp).where(cp.c.conversation_id == cid, cp.c.position_id.in_(retired)))
                posts = [p for p in posts if p not in retired]
            want = desired_members(
                idx,
                unit_id=conv.unit_id if conv.kind == "unit" else None,
                depth=conv.unit_depth or 0,
                position_ids=posts,
            )
            # The version these members are of, read with them: the index is patched in place, and
            # a change applied while this transaction awaits must not be stamped as done (run()).
            version = idx.version
            cm = conversation_members
            roles: dict[int, tuple[str | None, str | None]] = {
                int(p): (r, s)
                for p, r, s in await conn.execute(
                    select(cm.c.person_id, cm.c.role, cm.c.source).where(cm.c.conversation_id == cid)
                )
            }
            stored = {p: s for p, (_, s) in roles.items()}
            joined = sorted(want - set(stored))
            left = sorted(p for p, s in stored.items() if s == "derived" and p not in want)
            if conv.kind == "group" and len(stored) + len(joined) - len(left) > self._c.config.max_group_size:
                logger.warning("group %s would exceed its size limit; new holders not added", cid)
                joined = []
            await conn.execute(update(conversations).where(conversations.c.id == cid).values(member_version=version))
            if not joined and not left and not retired:
                return 0
            if joined:
                await conn.execute(
                    insert(cm),
                    [
                        {
                            "conversation_id": cid,
                            "person_id": p,
                            "last_read_message_id": 0,
                            "joined_at": now,
                            "role": None,
                            "source": "derived",
                            "muted": False,
                        }
                        for p in joined
                    ],
                )
            if left:
                await conn.execute(delete(cm).where(cm.c.conversation_id == cid, cm.c.person_id.in_(left)))
            stay = (set(stored) - set(left)) | set(joined)
            if conv.kind == "group" and stay and (conv.owner_id is None or conv.owner_id in left):
                # The owner was a member through a position they no longer hold (ownership had passed to
                # them), or every member had gone and a holder is drawn in again: someone must manage it.
                await pass_ownership(conn, cid, {p: roles.get(p, (None, "derived")) for p in stay})
            elif conv.kind == "group" and conv.owner_id in left:
                # Every member went with their positions, which stay listed: no owner until a next holder
                # is drawn in (and made owner above), rather than one naming someone gone.
                await conn.execute(update(conversations).where(conversations.c.id == cid).values(owner_id=None))
            extra = [NewEvent("conversation.left", ConversationLeft(conversation_id=cid).text(), left)] if left else []
            # Only a retired position went (vacant, or its holders also named): the note is the owner's word.
            # So is a group's first reconciliation (a unit group just made: everyone "joined"), which was
            # written as the member with the lowest id, who had done nothing (the 湖南 audit).
            first = [conv.owner_id] if stored_version is None and conv.owner_id else []  # 0: the system
            actor = next((p for p in [*first, *joined, *left, conv.owner_id, *sorted(stay)] if p is not None), None)
            if actor is None:
                return 1
            await system_message(
                tx,
                conversation_id=cid,
                conversation_kind=conv.kind,
                actor_id=actor,
                key=f"sys:{cid}:v{version}:m",
                detail={
                    "event": "members",
                    "joined": joined,
                    "left": left,
                    "position_ids": retired,
                    "org_version": version,
                },
                about=[*joined, *left],
                text=f"{len(joined)} joined, {len(left)} left"
                if joined or left
                else f"{len(retired)} positions retired",
                recipients=stay,
                extra_events=extra,
            )
            return 1

        n = await self._c.uow.run(change)
        self.changed += n
        return n


def _structural_units(idx: OrgIndex, op: dict[str, Any], units: set[int]) -> bool:
    """Add the unit ids whose unit groups a structural edit changes; False: look at everything.

    A new or renamed unit, a new (vacant) position and a role change move nobody.
    A moved unit takes its holders out of the groups of its old parent and the
    units above it, into those of its new parent and above (``from`` is in the entry).
    """
    kind = op.get("op")
    if kind in ("unit_create", "unit_rename", "position_create", "role_set"):
        return True
    if kind == "unit_move" and op.get("from") is not None:
        for ref in (op["from"], op["parent"]):
            u = idx.find_unit(int(ref))
            if u < 0:
                return False
            units.add(idx.unit_id(u))
            units.update(idx.unit_id(a) for a in idx.ancestors(u))
        return True
    return False
