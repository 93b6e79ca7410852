"""TaskService: create tasks (to a selector, for a notice), act on them, read them.

Every write is one transaction (``messaging.tasks.writer``) retried on lock
conflicts; ``notify`` runs only after the commit. Reads are access-checked:
a task is visible to the people involved in it (owner side, pool, creator
side, earlier owners); anyone else gets ``NotFound``, as for a missing task.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.audit import AuditEntry, record
from kernel.db.database import Database
from kernel.errors import BadRequest, Conflict, ErrorCode, Forbidden, NotFound
from kernel.text import check_text
from kernel.wire import iso
from messaging.notices.schema import notice_receipts, notices
from messaging.ports import IndexProvider
from messaging.tasks.categories import (
    Category,
    check_category_key,
    get_category,
    list_categories,
    load_catalog,
    put_category,
)
from messaging.tasks.categories import seed_categories as _seed
from messaging.tasks.lifecycle import Action, Side, State, decide
from messaging.tasks.model import CreatedTasks, TaskRow, check_digests, check_due_at, check_task_text
from messaging.tasks.oversight import audits_task, owned_within, task_audit
from messaging.tasks.routing import escalation_target
from messaging.tasks.schema import task_events, tasks
from messaging.tasks.storage import tasks_in_one_statement
from messaging.tasks.writer import (
    Change,
    involved_persons,
    load_task,
    write_change,
    write_new_task,
    write_new_tasks_pg,
)
from messaging.unit_of_work import Txn, UnitOfWork
from org_tree.index import OrgIndex
from org_tree.jurisdiction import Actor, check_jurisdiction
from org_tree.selectors import PositionSel, Selector, to_text

logger = logging.getLogger(__name__)

__all__ = ["IndexProvider", "Observe", "TaskService"]

#: Called after commit with (measure, category, seconds): measure is accept | resolve | close.
Observe = Callable[[str, str, float], None]

MAX_TASKS_PER_CREATE = 1_000
MAX_POOL = 200
MAX_LIST = 200


def _unit_id(index: OrgIndex, k: int) -> int:
    return index.unit_id(index.position_unit(k))


def _json_ids(ids: Sequence[int]) -> str:
    return json.dumps(list(ids), separators=(",", ":"))


def owner_values(index: OrgIndex, k: int) -> dict[str, Any]:
    return {"owner_position_id": index.position_id(k), "owner_unit_id": _unit_id(index, k)}


class TaskService:
    """Tasks owned by positions, with their lifecycle, history and deadlines.

    Args:
        linker: links photo digests to task events inside the transaction
            (``messaging.attachments.AttachmentService``); ``None`` accepts
            well-formed digests only (embedded use without uploads).
        observe: receives the closed-loop durations after each commit (Prometheus).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        index_provider: IndexProvider,
        *,
        linker: Any | None = None,
        observe: Observe | None = None,
    ) -> None:
        self._db = uow.db
        self._clock = uow.clock
        #: Every write of tasks and reports is one unit of work of this (ReportService shares it).
        self.uow = uow
        self._index = index_provider
        self.linker = linker
        self._observe = observe

    # ------------------------------------------------------------ categories
    async def seed_categories(self, cats: list[Category] | None = None) -> None:
        """Insert the shipped categories the database does not have yet (start-up)."""
        catalog = load_catalog() if cats is None else cats

        async def change(tx: Txn) -> None:
            await _seed(tx.conn, catalog, tx.now)

        await self.uow.run(change)

    async def categories(self) -> list[Category]:
        async with self._db.read() as conn:
            return await list_categories(conn)

    async def put_category(self, cat: Category, audit: AuditEntry | None = None) -> Category:
        """Create or replace a category (administrators only; the route checks that), audited in the same commit."""

        async def change(tx: Txn) -> None:
            await put_category(tx.conn, cat, tx.now)
            if audit is not None:
                await record(tx.conn, audit, tx.now)

        await self.uow.run(change)
        return cat

    # ------------------------------------------- shared with ReportService
    @property
    def db(self) -> Database:
        return self._db

    def index(self) -> OrgIndex:
        """This process's current org index."""
        return self._index()

    # -------------------------------------------------------------- helpers
    async def link_attachments(
        self, conn: AsyncConnection, digests: list[str], person_id: int, kind: str, ref: int
    ) -> None:
        """Record that the ref uses these uploads, inside the caller's transaction (no-op without a linker)."""
        if digests and self.linker is not None:
            await self.linker.link(conn, digests, person_id=person_id, ref_kind=kind, ref_id=ref)

    def _measure(self, t: TaskRow, action: Action) -> None:
        if self._observe is None:
            return
        at = {Action.ACCEPT: t.accepted_at, Action.RESOLVE: t.resolved_at, Action.CLOSE: t.closed_at}.get(action)
        if at is not None:
            self._observe(action.value, t.category, (at - t.created_at).total_seconds())

    # --------------------------------------------------------------- create
    async def create(
        self,
        actor_person_id: int,
        actor_position_id: int,
        *,
        selector: Selector,
        shared: bool,
        category: str,
        title: str,
        body: str,
        client_msg_id: str,
        attachments: Sequence[str] = (),
        due_at: datetime | None = None,
    ) -> CreatedTasks:
        """One task per addressed position (``shared=False``) or one task any of them may accept.

        Idempotent by ``(actor, client_msg_id)``: a retry returns the stored tasks, marked ``duplicate``
        (as first made: a different ``due_at`` in the retry changes nothing, like any other field).
        ``due_at``: resolved by then (docs/tasks.md "Deadlines and escalation"); ``None``, the category's windows.

        Raises:
            Forbidden: the actor does not hold the position, or the selector is out of its jurisdiction.
            BadRequest: bad text, too many positions, unknown category or attachment.
        """
        check_task_text(title, body)
        check_due_at(due_at, self._clock.now())
        check_category_key(category)  # checked before write_new_tasks_pg reads it inside its statement
        digests = check_digests(attachments)
        index = self._index()
        if not index.holds(actor_person_id, actor_position_id):
            raise Forbidden("you do not hold that position", data={"as_position": actor_position_id})
        ranges = check_jurisdiction(index, actor_position_id, selector)
        slots = index.range_slots(ranges)
        if not slots:
            raise BadRequest("the selector addresses no position", data={"field": "selector"})
        limit = MAX_POOL if shared else MAX_TASKS_PER_CREATE
        if len(slots) > limit:
            raise BadRequest(
                f"at most {limit} positions per {'shared task' if shared else 'request'}",
                data={"field": "selector", "positions": len(slots), "max": limit},
            )
        owners = [slots[0]] if shared else slots
        pool = [index.position_id(k) for k in slots] if shared else []
        base = {
            "category": category, "title": title, "body": body, "creator_person_id": actor_person_id,
            "creator_position_id": actor_position_id, "source": "direct", "source_id": None,
            "client_msg_id": client_msg_id, "pool": _json_ids(pool), "due_at": due_at,
        }  # fmt: skip
        return await self._create_many(
            index, base, owners, digests, actor_person_id, actor_position_id, selector=to_text(selector)
        )

    async def _create_many(
        self,
        index: OrgIndex,
        base: dict[str, Any],
        owners: list[int],
        digests: list[str],
        actor_person_id: int,
        actor_position_id: int,
        *,
        selector: str | None = None,
    ) -> CreatedTasks:
        async def change(tx: Txn) -> CreatedTasks:
            conn, now = tx.conn, tx.now
            made = Change(Action.CREATE, actor_person_id, actor_position_id, attachments=digests)
            if tasks_in_one_statement(conn):  # every task in one statement, the category read with them
                owned = [(index.position_id(k), _unit_id(index, k), _unit_id(index, k)) for k in owners]
                pairs = await write_new_tasks_pg(tx, index, base, owned, made)
            else:
                pairs = []
                cat = await get_category(conn, base["category"])
                for k in owners:
                    values = {
                        **base, **owner_values(index, k), "origin_unit_id": _unit_id(index, k), "watchers": "[]",
                        "escalation_level": 0, "accept_due_at": cat.accept_by(now, base["due_at"]),
                        "resolve_due_at": None,
                    }  # fmt: skip
                    t, ev_id = await write_new_task(tx, index, values, made)
                    if t is not None:
                        pairs.append((t, ev_id))
            out: list[TaskRow] = []
            for t, ev_id in pairs:
                await self.link_attachments(conn, digests, actor_person_id, "task_event", ev_id)
                out.append(t)
            if not out:  # a retry of a request that committed: answer with what it made
                rows = await conn.execute(
                    select(tasks)
                    .where(tasks.c.creator_person_id == actor_person_id)
                    .where(tasks.c.client_msg_id == base["client_msg_id"])
                    .order_by(tasks.c.id)
                )
                return CreatedTasks([TaskRow.from_row(r) for r in rows], duplicate=True)
            tx.audit(task_audit(index, base, actor_position_id, out, selector))
            return CreatedTasks(out)

        return await self.uow.run(change)

    async def create_for_notice(
        self,
        actor_person_id: int,
        notice_id: int,
        *,
        category: str = "general",
        client_msg_id: str,
        title: str | None = None,
        shared: bool = False,
        as_position: int | None = None,
        due_at: datetime | None = None,
    ) -> CreatedTasks:
        """Tasks for the positions a notice addressed, created as the notice's sender position.

        ``due_at`` as for :meth:`create`: a notice's tasks are work someone expects by a date too.

        ``as_position``, like every other write's, names the position the caller acts as: it
        must be one they hold (else ``Forbidden``) and the notice's sender position.

        Raises:
            Forbidden: the caller does not hold ``as_position``.
            NotFound: no such notice, or the actor is not on its sender side (as ``as_position``).
            Conflict: the notice was recalled.
        """
        check_category_key(category)
        check_due_at(due_at, self._clock.now())
        index = self._index()
        async with self._db.read() as conn:
            n = (await conn.execute(select(notices).where(notices.c.id == notice_id))).first()
            if n is None:
                raise NotFound("no such notice", data={"notice_id": notice_id})
            sender_pos = int(n.sender_position_id)
            if as_position is not None and not index.holds(actor_person_id, as_position):
                raise Forbidden("you do not hold that position", data={"as_position": as_position})
            if as_position is not None and as_position != sender_pos:
                raise NotFound("no such notice sent as that position", data={"notice_id": notice_id})
            if int(n.sender_person_id) != actor_person_id and not index.holds(actor_person_id, sender_pos):
                raise NotFound("no such notice", data={"notice_id": notice_id})
            if not index.holds(actor_person_id, sender_pos):
                # Its former holder still reads the notice, but tasks in the position's name are the
                # new holder's to create (docs/notices.md "Access"), as recall and remind are.
                raise Forbidden(
                    "the notice was sent as a position you no longer hold",
                    data={"notice_id": notice_id, "position_id": sender_pos},
                )
            if n.recalled_at is not None:
                raise Conflict("the notice was recalled", data={"notice_id": notice_id, "recalled": True})
            rows = await conn.execute(
                select(notice_receipts.c.position_id)
                .where(notice_receipts.c.notice_id == notice_id)
                .distinct()
                .order_by(notice_receipts.c.position_id)
            )
            addressed = [int(r[0]) for r in rows]
        slots = [k for k in map(index.find_slot, addressed) if k >= 0]
        if not slots:
            raise BadRequest("the notice addressed no position that still exists", data={"notice_id": notice_id})
        if len(slots) > (MAX_POOL if shared else MAX_TASKS_PER_CREATE):
            raise BadRequest("the notice addressed too many positions for tasks", data={"positions": len(slots)})
        task_title = title if title is not None else str(n.title)
        check_task_text(task_title, str(n.body))
        owners = [slots[0]] if shared else slots
        pool = [index.position_id(k) for k in slots] if shared else []
        base = {
            "category": category, "title": task_title, "body": str(n.body), "creator_person_id": actor_person_id,
            "creator_position_id": sender_pos, "source": "notice", "source_id": notice_id,
            "client_msg_id": client_msg_id, "pool": _json_ids(pool), "due_at": due_at,
        }  # fmt: skip
        return await self._create_many(index, base, owners, [], actor_person_id, sender_pos)

    # ------------------------------------------------------------------ act
    def _sides(self, index: OrgIndex, person_id: int, as_position: int, t: TaskRow) -> frozenset[Side]:
        if not index.holds(person_id, as_position):
            raise Forbidden("you do not hold that position", data={"as_position": as_position})
        sides = set()
        if as_position == t.owner_position_id:
            sides.add(Side.OWNER)
        if t.state == State.CREATED and as_position in t.pool:
            sides.add(Side.OWNER)
        if as_position == t.creator_position_id:
            sides.add(Side.CREATOR)
        if not sides:
            raise Forbidden(
                "that position is neither the task's owner nor its creator",
                data={"task_id": t.id, "as_position": as_position},
            )
        return frozenset(sides)

    async def act(
        self,
        actor_person_id: int,
        as_position: int,
        task_id: int,
        action: Action,
        version: int,
        *,
        comment: str = "",
        attachments: Sequence[str] = (),
        to_position: int | None = None,
        delegate_of: int | None = None,
    ) -> TaskRow:
        """Take ``action`` on the task as seen at ``version``.

        ``delegate_of`` (an app handling cases for the offices of a subtree, pre-order unit):
        the actor acts *for* the owner position ``as_position`` without holding it, allowed
        only when that is the task's owner and its unit lies in the subtree (docs/apps.md).

        Raises:
            Conflict: ``stale_version`` (someone acted first: reload), or
                ``invalid_transition`` (not allowed from the current state).
            Forbidden: the actor's position is not on a side allowed to act.
            NotFound: no such task, or the actor is not involved in it.
            BadRequest: bad comment, attachments, or reassignment target.
        """
        digests = check_digests(attachments)
        # A comment is its text or its photos: one with neither wrote a history entry and a
        # task.updated to everyone involved, saying nothing (the 湖南 audit). Other actions may
        # go without words.
        check_text(comment, field="comment", max_chars=2000, allow_empty=action != Action.COMMENT or bool(digests))
        if action in (Action.CREATE, Action.ESCALATE):
            raise BadRequest(f"{action.value} is not an action clients take", data={"field": "action"})
        if action == Action.REASSIGN and to_position is None:
            raise BadRequest("reassign needs to_position", data={"field": "to_position"})
        if action != Action.REASSIGN and to_position is not None:
            # Dropped silently before: a client that meant to reassign never learned nothing moved.
            raise BadRequest("to_position is only for reassign", data={"field": "to_position"})
        index = self._index()

        async def change(tx: Txn) -> TaskRow:
            conn, now = tx.conn, tx.now
            before = await load_task(conn, task_id)
            delegated = delegate_of is not None and owned_within(index, before, delegate_of)
            if not delegated and actor_person_id not in involved_persons(index, before):
                if action == Action.ACCEPT and index.holds(actor_person_id, as_position):
                    await _lost_the_race(conn, task_id, as_position)
                raise NotFound("no such task", data={"task_id": task_id})
            if before.version != version:
                from messaging.tasks.lifecycle import stale

                raise stale(task_id, version, before.version)
            if delegated and as_position == before.owner_position_id:
                sides = frozenset({Side.OWNER})
            else:
                sides = self._sides(index, actor_person_id, as_position, before)
            step = decide(State(before.state), action, sides)
            cat = await get_category(conn, before.category)
            values, planned = self._plan(index, before, cat, step.action, as_position, to_position, now)
            planned.actor_person_id, planned.actor_position_id = actor_person_id, as_position
            planned.comment, planned.attachments = comment, digests
            after, ev_id = await write_change(
                tx, index, before, version, step.to_state, planned, set_values=values, category=cat
            )
            await self.link_attachments(conn, digests, actor_person_id, "task_event", ev_id)
            return after

        after = await self.uow.run(change)
        self._measure(after, action)
        return after

    def _plan(
        self,
        index: OrgIndex,
        t: TaskRow,
        cat: Category,
        action: Action,
        as_position: int,
        to_position: int | None,
        now: datetime,
    ) -> tuple[dict[str, Any], Change]:
        """The column changes an action makes besides state and version."""
        change = Change(action, None, None)
        if action == Action.ACCEPT:
            resolve_by = cat.resolve_by(now, t.due_at)
            v: dict[str, Any] = {"accepted_at": now, "resolve_due_at": resolve_by, "accept_due_at": None}
            if t.pool:  # a pool member takes the shared task; the pool closes
                # Also when it is the pool's first position, stored as nominal owner: the
                # others must stop being involved (they get the 409 of _lost_the_race).
                v["pool"] = "[]"
                if as_position != t.owner_position_id:
                    v.update(owner_values(index, index.slot(as_position)))
                change.data = {"from_owner": t.owner_position_id, "to_owner": as_position, "pool": list(t.pool)}
            return v, change
        if action == Action.RESOLVE:
            return {"resolved_at": now, "resolve_due_at": None}, change
        if action == Action.RETURN:
            return {"resolved_at": None, "resolve_due_at": cat.resolve_by(now, t.due_at)}, change
        if action == Action.CLOSE:
            return {"closed_at": now}, change
        if action == Action.CANCEL:
            return {"accept_due_at": None, "resolve_due_at": None}, change
        if action == Action.REJECT:
            target = escalation_target(index, cat.escalation, index.slot(t.owner_position_id))
            if target < 0:
                raise Conflict(
                    "there is no position above to take this task",
                    code=ErrorCode.INVALID_TRANSITION,
                    data={"task_id": t.id},
                )
            change.urgent = cat.ding
            return self.plan_move(index, t, cat, target, now, change, level=t.escalation_level + 1, rule=cat.escalation)
        if action == Action.REASSIGN:
            assert to_position is not None
            k = index.slot(to_position)
            # Down the creator's scope, or sideways within the unit the task is already at
            # (a reporter redirects a report to the right office of the village it went to).
            if index.position_unit(k) != index.position_unit(index.slot(t.owner_position_id)):
                check_jurisdiction(index, as_position, PositionSel(to_position))
            if index.position_id(k) == t.owner_position_id:
                raise BadRequest("the task is already owned by that position", data={"field": "to_position"})
            return self.plan_move(index, t, cat, k, now, change, level=t.escalation_level, rule=None)
        return {}, change

    @staticmethod
    def plan_move(
        index: OrgIndex,
        t: TaskRow,
        cat: Category,
        k: int,
        now: datetime,
        change: Change,
        *,
        level: int,
        rule: str | None,
    ) -> tuple[dict[str, Any], Change]:
        """A new owner: back to created with a fresh accept deadline; the old owner keeps watching.

        The task keeps its ``due_at``; the fresh accept deadline is the category's window, never
        past a ``due_at`` still ahead (``Category.accept_by``).
        """
        watchers = list(dict.fromkeys([*t.watchers, t.owner_position_id, *t.pool]))
        v = {
            **owner_values(index, k), "pool": "[]", "watchers": _json_ids(watchers), "escalation_level": level,
            "accepted_at": None, "resolved_at": None, "resolve_due_at": None,
            "accept_due_at": cat.accept_by(now, t.due_at),
        }  # fmt: skip
        change.data = {"from_owner": t.owner_position_id, "to_owner": index.position_id(k)}
        if rule is not None:
            change.data["rule"] = rule
        return v, change

    # ---------------------------------------------------------------- reads
    async def get(self, actor_person_id: int, task_id: int, *, overseer: Actor | None = None) -> dict[str, Any]:
        """The task with its body and full history (involved persons, and auditors over the owner's unit)."""
        index = self._index()
        async with self._db.read() as conn:
            t = await load_task(conn, task_id)
            if not audits_task(index, overseer, t) and actor_person_id not in involved_persons(index, t):
                raise NotFound("no such task", data={"task_id": task_id})
            rows = await conn.execute(
                select(task_events).where(task_events.c.task_id == task_id).order_by(task_events.c.version)
            )
            history = [
                {
                    "event_id": int(r.id),
                    "version": int(r.version),
                    "action": r.action,
                    "from_state": r.from_state,
                    "to_state": r.to_state,
                    "actor": None
                    if r.actor_person_id is None
                    else {"person_id": int(r.actor_person_id), "position_id": r.actor_position_id},
                    "at": iso(r.at),
                    "comment": r.comment,
                    "attachments": json.loads(r.attachments),
                    "data": json.loads(r.data),
                }  # fmt: skip
                for r in rows
            ]
        return {**t.summary(), "body": t.body, "history": history}

    async def list_for(
        self, position_ids: Sequence[int], *, side: str = "owner", state: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Tasks owned by (or offered to, or created as) the given positions, newest first."""
        if side not in ("owner", "creator"):
            raise BadRequest("side must be owner or creator", data={"field": "side"})
        if state is not None and state not in {s.value for s in State}:
            raise BadRequest("unknown state", data={"field": "state"})
        if not position_ids:
            return []
        ids = list(position_ids)[:100]
        if side == "owner":
            offered = [tasks.c.pool.like(f"%{p}%") for p in ids]  # narrowed exactly below
            cond = or_(tasks.c.owner_position_id.in_(ids), *offered)
        else:
            cond = tasks.c.creator_position_id.in_(ids)
        q = select(tasks).where(cond)
        if state is not None:
            q = q.where(tasks.c.state == state)
        q = q.order_by(tasks.c.id.desc()).limit(max(1, min(limit, MAX_LIST)) * 2)
        async with self._db.read() as conn:
            rows = [TaskRow.from_row(r) for r in await conn.execute(q)]
        mine = set(ids)
        keep = [
            t
            for t in rows
            if side == "creator" or t.owner_position_id in mine or (t.state == State.CREATED and mine & set(t.pool))
        ]
        return [t.summary() for t in keep[: max(1, min(limit, MAX_LIST))]]

    # ------------------------------------------------------------ visibility
    async def can_see_task_event(self, person_id: int, event_id: int) -> bool:
        """Whether a photo linked to this task event may be shown to ``person_id``."""
        async with self._db.read() as conn:
            tid = (await conn.execute(select(task_events.c.task_id).where(task_events.c.id == event_id))).scalar()
            if tid is None:
                return False
            t = await load_task(conn, int(tid))
        return person_id in involved_persons(self._index(), t)

    async def overdue_count(self, now: datetime | None = None) -> int:
        """Open tasks past a deadline or their ``due_at`` (a gauge; the web client's 已超时 is the same test)."""
        now = now or self._clock.now()
        async with self._db.read() as conn:
            q = select(tasks.c.id).where(
                or_(tasks.c.accept_due_at < now, tasks.c.resolve_due_at < now, tasks.c.due_at < now),
                tasks.c.state.in_([State.CREATED.value, State.ACCEPTED.value, State.IN_PROGRESS.value]),
            )
            return len((await conn.execute(q.limit(100_000))).all())


async def _lost_the_race(conn: AsyncConnection, task_id: int, as_position: int) -> None:
    """A pool member accepting a shared task another member took first: ``409 conflict``, not 404.

    Why: the member saw the task (it was offered to their position) and tapped accept at about
    the same time as a colleague; "no such task" would read as if it had vanished. The accept's
    history row keeps the pool it was offered to, so the answer names who took it, and only to
    a holder of a position of that pool (anyone else still gets the 404 of an unknown task).
    """
    row = (
        await conn.execute(
            select(task_events.c.data, task_events.c.actor_position_id)
            .where(task_events.c.task_id == task_id, task_events.c.action == Action.ACCEPT.value)
            .order_by(task_events.c.version.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return
    data = json.loads(row.data) if row.data else {}
    if as_position in data.get("pool", ()):
        raise Conflict(
            "another position of the pool accepted this task first",
            data={"task_id": task_id, "accepted_by_position_id": row.actor_position_id},
        )
