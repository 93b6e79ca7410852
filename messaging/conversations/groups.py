"""Ad-hoc groups: create, rename, add and remove members (persons or positions), leave, admins.

Owner and admins manage; every member may leave (the owner's role passes to
an admin, else the longest-standing member; the last member's going dissolves the group). A position member means its
current holders: they are added at once from the database and kept in step
afterwards by the reconciler (``members.py``), as rows with source ``derived``.
Each change writes one system message to the members, in the same
transaction as the change.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import insert_ignore
from kernel.errors import BadRequest, Forbidden, NotFound
from kernel.text import check_text, normalize_name
from messaging.conversations.access import Access, access, current_holders, load_conversation, require_live
from messaging.conversations.model import GroupTooLarge
from messaging.conversations.schema import conversation_positions
from messaging.conversations.service import ConversationService
from messaging.conversations.system import system_message
from messaging.events import NewEvent
from messaging.schema import conversation_members, conversations
from messaging.shapes import ConversationLeft
from messaging.unit_of_work import Txn

logger = logging.getLogger(__name__)

__all__ = ["GroupService"]

MAX_IDS_PER_CHANGE = 500


def _ids(values: Sequence[int], name: str) -> list[int]:
    if len(values) > MAX_IDS_PER_CHANGE:
        raise BadRequest(f"at most {MAX_IDS_PER_CHANGE} {name} per change", data={"field": name})
    return sorted(set(values))


def _title(raw: str) -> str:
    return normalize_name(check_text(raw, field="title", max_chars=100))


async def _edit_note(
    tx: Txn,
    acc: Access,
    actor_id: int,
    tag: str,
    text: str,
    recipients: Iterable[int],
    about: Iterable[int],
    detail: dict[str, object],
    *,
    extra_events: Iterable[NewEvent] = (),
) -> None:
    """The system message of an edit by hand (rename ``t``, add ``a``, remove ``r``): ``text`` to ``recipients``.

    Keyed at random, unlike the reconciler's notes: every edit is a note of its own,
    and the edit's transaction already makes it exactly-once.
    """
    cid = acc.conversation.id
    await system_message(
        tx,
        conversation_id=cid,
        conversation_kind=acc.conversation.kind,
        actor_id=actor_id,
        key=f"sys:{cid}:{tag}:{secrets.token_hex(6)}",
        detail=detail,
        about=about,
        text=text,
        recipients=recipients,
        extra_events=extra_events,
    )


async def pass_ownership(conn: AsyncConnection, cid: int, stay: dict[int, tuple[str | None, str | None]]) -> int:
    """Make one of ``stay`` (person → (role, source)) the group's owner, and return them.

    Why one rule for every way an owner goes (their leave, removal by name, the membership job
    taking out a holder who left the position that made them a member): a group whose
    ``owner_id`` names someone gone can no longer be managed by anyone. An admin first, then
    someone named rather than drawn in through a position, then the lowest id.
    """
    heir = next((p for p in sorted(stay) if stay[p][0] == "admin"), None) or min(
        stay, key=lambda p: (stay[p][1] == "derived", p)
    )
    cm = conversation_members
    await conn.execute(update(cm).where(cm.c.conversation_id == cid, cm.c.person_id == heir).values(role="owner"))
    await conn.execute(update(conversations).where(conversations.c.id == cid).values(owner_id=heir))
    return heir


class GroupService:
    def __init__(self, conversations: ConversationService) -> None:
        self._c = conversations

    async def _check_new(
        self, conn: AsyncConnection, person_ids: list[int], position_ids: list[int]
    ) -> dict[int, set[int]]:
        await require_live(conn, person_ids, position_ids)
        return await current_holders(conn, position_ids)

    def _limit(self, size: int) -> None:
        limit = self._c.config.max_group_size
        if size > limit:
            raise GroupTooLarge(
                f"a group may have at most {limit} members; this change would make {size}",
                data={"limit": limit, "size": size},
            )

    async def create(
        self, owner_id: int, title: str, person_ids: Sequence[int] = (), position_ids: Sequence[int] = ()
    ) -> dict[str, Any]:
        clean = _title(title)
        people, posts = _ids(person_ids, "person_ids"), _ids(position_ids, "position_ids")

        async def change(tx: Txn) -> dict[str, Any]:
            conn, now = tx.conn, tx.now
            holders = await self._check_new(conn, [*people, owner_id], posts)
            derived = set().union(*holders.values()) if holders else set()
            explicit = set(people) | {owner_id}
            self._limit(len(explicit | derived))
            cid = int(
                (
                    await conn.execute(
                        insert(conversations)
                        .values(kind="group", title=clean, owner_id=owner_id, created_at=now)
                        .returning(conversations.c.id)
                    )
                ).scalar_one()
            )
            rows = [
                {
                    "conversation_id": cid,
                    "person_id": p,
                    "last_read_message_id": 0,
                    "joined_at": now,
                    "role": "owner" if p == owner_id else None,
                    "source": None if p in explicit else "derived",
                    "muted": False,
                }
                for p in sorted(explicit | derived)
            ]
            await conn.execute(insert(conversation_members), rows)
            if posts:
                await conn.execute(
                    insert(conversation_positions),
                    [{"conversation_id": cid, "position_id": p, "added_at": now} for p in posts],
                )
            members = explicit | derived
            await system_message(
                tx,
                conversation_id=cid,
                conversation_kind="group",
                actor_id=owner_id,
                key=f"sys:{cid}:created",
                detail={"event": "created", "title": clean, "joined": sorted(members)},
                about=members,
                text=f"created {clean}",
                recipients=members,
            )
            return await self.view(conn, cid)

        return await self._c.uow.run(change)

    async def get(self, person_id: int, conversation_id: int) -> dict[str, Any]:
        """The group's title, owner, members and position members (members only)."""
        async with self._c.db.read() as conn:
            acc = await access(conn, person_id, conversation_id)
            if acc.conversation.kind not in ("group", "unit"):
                raise NotFound("no such group", data={"conversation_id": conversation_id})
            return await self.view(conn, conversation_id)

    @staticmethod
    async def view(conn: AsyncConnection, cid: int) -> dict[str, Any]:
        """The group as its members see it (callers have checked access)."""
        conv = await load_conversation(conn, cid)
        members = await conn.execute(
            select(conversation_members.c.person_id, conversation_members.c.role, conversation_members.c.source)
            .where(conversation_members.c.conversation_id == cid)
            .order_by(conversation_members.c.person_id)
        )
        posts = await conn.execute(
            select(conversation_positions.c.position_id)
            .where(conversation_positions.c.conversation_id == cid)
            .order_by(conversation_positions.c.position_id)
        )
        view: dict[str, Any] = {
            "id": cid,
            "kind": conv.kind,
            "title": conv.title,
            "owner_id": conv.owner_id,
            "members": [{"person_id": int(p), "role": r, "derived": s == "derived"} for p, r, s in members],
            "position_ids": [int(r[0]) for r in posts],
        }
        if conv.kind == "unit":
            view.update(unit_id=conv.unit_id, depth=conv.unit_depth or 0)
        return view

    async def _managed(self, conn: AsyncConnection, actor_id: int, cid: int) -> Access:
        acc = await access(conn, actor_id, cid, lock=True)
        if acc.conversation.kind != "group":
            raise BadRequest("only ad-hoc groups are managed by hand", data={"conversation_id": cid})
        if acc.role not in ("owner", "admin"):
            raise Forbidden("only the owner and admins manage the group", data={"conversation_id": cid})
        return acc

    async def rename(self, actor_id: int, conversation_id: int, title: str) -> dict[str, Any]:
        clean = _title(title)

        async def change(tx: Txn) -> dict[str, Any]:
            conn = tx.conn
            acc = await self._managed(conn, actor_id, conversation_id)
            await conn.execute(update(conversations).where(conversations.c.id == conversation_id).values(title=clean))
            members = await self._members(conn, conversation_id)
            detail: dict[str, object] = {"event": "renamed", "title": clean}
            await _edit_note(tx, acc, actor_id, "t", f"renamed the group to {clean}", members, (), detail)
            return await self.view(conn, conversation_id)

        return await self._c.uow.run(change)

    @staticmethod
    async def _members(conn: AsyncConnection, cid: int) -> dict[int, tuple[str | None, str | None]]:
        rows = await conn.execute(
            select(conversation_members.c.person_id, conversation_members.c.role, conversation_members.c.source).where(
                conversation_members.c.conversation_id == cid
            )
        )
        return {int(p): (r, s) for p, r, s in rows}

    @staticmethod
    async def _through(
        conn: AsyncConnection, cid: int, keep: Callable[[int], bool] = lambda _: True
    ) -> dict[int, set[int]]:
        """Person → the group's member positions (those ``keep`` accepts) they hold now, from the database.

        Such a person is a member through the position whether or not they were also
        named: removing them by name, or their leave, would drop a member the group's
        positions still bring in (the reconciler only acts on org changes).
        """
        cp = conversation_positions
        posts = [int(r[0]) for r in await conn.execute(select(cp.c.position_id).where(cp.c.conversation_id == cid))]
        out: dict[int, set[int]] = {}
        for pos, people in (await current_holders(conn, [p for p in posts if keep(p)])).items():
            for person in people:
                out.setdefault(person, set()).add(pos)
        return out

    async def add(
        self, actor_id: int, conversation_id: int, person_ids: Sequence[int] = (), position_ids: Sequence[int] = ()
    ) -> dict[str, Any]:
        people, posts = _ids(person_ids, "person_ids"), _ids(position_ids, "position_ids")
        if not people and not posts:
            raise BadRequest("name persons or positions to add", data={"field": "person_ids"})

        async def change(tx: Txn) -> dict[str, Any]:
            conn, now = tx.conn, tx.now
            acc = await self._managed(conn, actor_id, conversation_id)
            holders = await self._check_new(conn, people, posts)
            members = await self._members(conn, conversation_id)
            derived = set().union(*holders.values()) if holders else set()
            new_explicit = [p for p in people if p not in members or members[p][1] == "derived"]
            new_derived = sorted(derived - set(members) - set(people))
            joined = sorted({p for p in new_explicit if p not in members} | set(new_derived))
            self._limit(len(members) + len(joined))
            cm = conversation_members
            if new_explicit:
                # A derived member added by name stays when the position goes.
                await conn.execute(
                    update(cm)
                    .where(cm.c.conversation_id == conversation_id, cm.c.person_id.in_(new_explicit))
                    .values(source=None)
                )
            rows = [
                {
                    "conversation_id": conversation_id,
                    "person_id": p,
                    "last_read_message_id": 0,
                    "joined_at": now,
                    "role": None,
                    "source": None if p in people else "derived",
                    "muted": False,
                }
                for p in joined
            ]
            if rows:
                await conn.execute(insert(cm), rows)
            if posts:
                await conn.execute(
                    insert_ignore(conn, conversation_positions, ["conversation_id", "position_id"]),
                    [{"conversation_id": conversation_id, "position_id": p, "added_at": now} for p in posts],
                )
            if joined or posts:
                detail: dict[str, object] = {"event": "members", "joined": joined, "left": [], "position_ids": posts}
                await _edit_note(tx, acc, actor_id, "a", f"{len(joined)} joined", {*members, *joined}, joined, detail)
            return await self.view(conn, conversation_id)

        return await self._c.uow.run(change)

    async def remove(
        self, actor_id: int, conversation_id: int, person_ids: Sequence[int] = (), position_ids: Sequence[int] = ()
    ) -> dict[str, Any]:
        people, posts = _ids(person_ids, "person_ids"), _ids(position_ids, "position_ids")

        async def change(tx: Txn) -> dict[str, Any]:
            conn = tx.conn
            acc = await self._managed(conn, actor_id, conversation_id)
            members = await self._members(conn, conversation_id)
            going = set(posts)  # positions removed in this same change bring no one in
            through = await self._through(conn, conversation_id, keep=lambda q: q not in going)
            for p in people:
                if p not in members:
                    raise NotFound("not a member", data={"person_id": p})
                role = members[p][0]
                if role == "owner" or (role == "admin" and acc.role != "owner"):
                    raise Forbidden(
                        "the owner, and admins for anyone but the owner, cannot be removed", data={"person_id": p}
                    )
                if p in through:
                    raise Forbidden(
                        "a member through a position is removed with the position",
                        data={"person_id": p, "position_ids": sorted(through.get(p, ()))},
                    )
            return await self._drop(tx, acc, members, set(people), posts, actor_id)

        return await self._c.uow.run(change)

    async def leave(self, person_id: int, conversation_id: int) -> dict[str, Any]:
        async def change(tx: Txn) -> dict[str, Any]:
            conn = tx.conn
            acc = await access(conn, person_id, conversation_id, lock=True)
            if acc.conversation.kind != "group":
                raise BadRequest("only ad-hoc groups can be left", data={"conversation_id": conversation_id})
            members = await self._members(conn, conversation_id)
            through = await self._through(conn, conversation_id)
            if person_id in through:
                raise Forbidden(
                    "you are a member through your position",
                    data={"conversation_id": conversation_id, "position_ids": sorted(through.get(person_id, ()))},
                )
            return await self._drop(tx, acc, members, {person_id}, [], person_id)

        return await self._c.uow.run(change)

    async def _drop(
        self,
        tx: Txn,
        acc: Access,
        members: dict[int, tuple[str | None, str | None]],
        people: set[int],
        posts: list[int],
        actor_id: int,
    ) -> dict[str, Any]:
        conn = tx.conn
        cid = acc.conversation.id
        cp, cm = conversation_positions, conversation_members
        if posts:
            await conn.execute(delete(cp).where(cp.c.conversation_id == cid, cp.c.position_id.in_(posts)))
            remaining = [
                int(r[0]) for r in await conn.execute(select(cp.c.position_id).where(cp.c.conversation_id == cid))
            ]
            still = set().union(*(await current_holders(conn, remaining)).values()) if remaining else set()
            people |= {p for p, (_, src) in members.items() if src == "derived" and p not in still}
        left = sorted(people & set(members))
        if left:
            await conn.execute(delete(cm).where(cm.c.conversation_id == cid, cm.c.person_id.in_(left)))
        stay = [p for p in members if p not in people]
        if not stay:
            # The last member went: the group is dissolved. No owner (it pointed at someone gone), and no
            # member positions: a vacant one would otherwise bring its next holder into a group nobody
            # manages. Nobody can read, write or rejoin it (docs/conversations.md "Ad-hoc groups").
            await conn.execute(delete(cp).where(cp.c.conversation_id == cid))
            await conn.execute(update(conversations).where(conversations.c.id == cid).values(owner_id=None))
        elif any(members[p][0] == "owner" for p in left):
            await pass_ownership(conn, cid, {p: members[p] for p in stay})
        if left:
            gone = NewEvent("conversation.left", ConversationLeft(conversation_id=cid).text(), left)
            detail: dict[str, object] = {"event": "members", "joined": [], "left": left, "position_ids": posts}
            await _edit_note(tx, acc, actor_id, "r", f"{len(left)} left", stay, left, detail, extra_events=[gone])
        return await self.view(conn, cid)

    async def set_admin(self, owner_id: int, conversation_id: int, person_id: int, admin: bool) -> dict[str, Any]:
        async def change(tx: Txn) -> dict[str, Any]:
            conn = tx.conn
            acc = await self._managed(conn, owner_id, conversation_id)
            if acc.role != "owner":
                raise Forbidden("only the owner appoints admins", data={"conversation_id": conversation_id})
            members = await self._members(conn, conversation_id)
            if person_id not in members or person_id == owner_id:
                raise NotFound("not a member", data={"person_id": person_id})
            cm = conversation_members
            await conn.execute(
                update(cm)
                .where(cm.c.conversation_id == conversation_id, cm.c.person_id == person_id)
                .values(role="admin" if admin else None)
            )
            return await self.view(conn, conversation_id)

        return await self._c.uow.run(change)
