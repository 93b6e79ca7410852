"""Writes of one task change inside the caller's unit of work: row, history, timers, events, outbox.

Every change, whether a person's action or a deadline escalation, goes through
:func:`write_change` so that the same five things always happen together in
one transaction: the version-checked update of ``tasks``, one ``task_events``
row, the task's timers replaced for its new state, one ``outbox_events`` row
and one event for the involved persons. The last two go through the
:class:`~messaging.unit_of_work.Txn`, which writes them at the end of the
transaction (the event last: it locks the streams) and wakes the persons after
commit. The batch path (:func:`write_changes_locked`, deadline escalations)
inserts its outbox rows itself with one COPY and returns its events.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import for_update
from kernel.errors import NotFound
from kernel.wire import iso
from messaging import outbox
from messaging.events import NewEvent
from messaging.shapes import TaskChanged, TaskTransition, TaskView
from messaging.tasks.categories import Category, unknown_category
from messaging.tasks.lifecycle import Action, State, stale
from messaging.tasks.model import TaskRow
from messaging.tasks.schema import outbox_events, task_events, task_timers, tasks
from messaging.tasks.storage import insert_new_tasks, update_tasks
from messaging.unit_of_work import Txn
from org_tree.bulk import bulk_insert
from org_tree.index import OrgIndex
from org_tree.resolution import VacancyPolicy, resolve_slots

logger = logging.getLogger(__name__)

__all__ = [
    "Change",
    "OUTBOX_TYPES",
    "Planned",
    "Written",
    "write_changes_locked",
    "involved_persons",
    "load_task",
    "write_change",
    "write_new_task",
    "write_new_tasks_pg",
]

#: Outbox event type per action (docs/events.md).
OUTBOX_TYPES = {
    Action.CREATE: "task.created",
    Action.ACCEPT: "task.accepted",
    Action.START: "task.started",
    Action.RESOLVE: "task.resolved",
    Action.VERIFY: "task.verified",
    Action.CLOSE: "task.closed",
    Action.RETURN: "task.returned",
    Action.REJECT: "task.rejected",
    Action.REASSIGN: "task.reassigned",
    Action.ESCALATE: "task.escalated",
    Action.CANCEL: "task.cancelled",
    Action.COMMENT: "task.commented",
}
_POLICY = VacancyPolicy()


@dataclass(slots=True)
class Change:
    """One transition as the writer applies it."""

    action: Action
    actor_person_id: int | None
    actor_position_id: int | None
    comment: str = ""
    attachments: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    #: Deliver with ``urgent`` set (a DING category's escalation).
    urgent: bool = False


def _holders_of(index: OrgIndex, pid: int) -> frozenset[int]:
    k = index.find_slot(pid)
    if k < 0:
        return frozenset()
    people = set(resolve_slots(index, [k], _POLICY).persons)
    people.update(p for p, _kind in index.alternate_holders(k))
    return frozenset(people)


def _positions_persons(
    index: OrgIndex, position_ids: Sequence[int], cache: dict[int, frozenset[int]] | None = None
) -> set[int]:
    """Current holders of the positions (deputies/acting too), with the vacancy fallback for empty ones.

    ``cache`` (position → holders) serves a batch whose tasks share positions.
    """
    out: set[int] = set()
    for pid in dict.fromkeys(position_ids):
        if cache is None:
            out.update(_holders_of(index, pid))
            continue
        got = cache.get(pid)
        if got is None:
            got = cache[pid] = _holders_of(index, pid)
        out.update(got)
    return out


def involved_persons(
    index: OrgIndex, t: TaskRow, extra: Sequence[int] = (), cache: dict[int, frozenset[int]] | None = None
) -> list[int]:
    """Everyone a change of ``t`` is delivered to: owner side, pool, creator side, earlier owners."""
    people = _positions_persons(index, (t.owner_position_id, *t.pool, t.creator_position_id, *t.watchers), cache)
    people.add(t.creator_person_id)
    people.update(extra)
    return sorted(people)


async def load_task(conn: AsyncConnection, task_id: int, *, lock: bool = False) -> TaskRow:
    q = select(tasks).where(tasks.c.id == task_id)
    row = (await conn.execute(for_update(conn, q) if lock else q)).first()
    if row is None:
        raise NotFound("no such task", data={"task_id": task_id})
    return TaskRow.from_row(row)


def _event_dict(t: TaskRow, c: Change, from_state: str | None, now: datetime) -> dict[str, Any]:
    actor = None if c.actor_person_id is None else {"person_id": c.actor_person_id, "position_id": c.actor_position_id}
    return {
        "version": t.version,
        "action": c.action.value,
        "from_state": from_state,
        "to_state": t.state,
        "actor": actor,
        "at": iso(now),
        "comment": c.comment,
        "attachments": c.attachments,
        "data": c.data,
    }


def _changed(body: dict[str, Any], urgent: bool) -> TaskChanged:
    """``task.created`` / ``task.updated``: the task and its transition (``urgent`` on a DING escalation)."""
    changed = TaskChanged(
        task=TaskView.model_validate(body["task"]), event=TaskTransition.model_validate(body["event"])
    )
    return changed.model_copy(update={"urgent": True}) if urgent else changed


async def _replace_timers(conn: AsyncConnection, t: TaskRow, now: datetime, *, fresh: bool = False) -> None:
    """Retire the task's open deadline timers and arm the one its new state waits on.

    ``fresh``: the task was inserted in this transaction, so it has no timers to retire (one statement less).
    """
    tt = task_timers
    if not fresh:
        await conn.execute(
            update(tt)
            .where(tt.c.task_id == t.id, tt.c.done_at.is_(None), tt.c.kind != "ding")
            .values(done_at=now, outcome="superseded", claimed_until=None)
        )
    due, kind = None, None
    if t.state == State.CREATED and t.accept_due_at is not None:
        due, kind = t.accept_due_at, "accept"
    elif t.state in (State.ACCEPTED, State.IN_PROGRESS) and t.resolve_due_at is not None:
        due, kind = t.resolve_due_at, "resolve"
    if due is not None:
        await conn.execute(insert(tt).values(task_id=t.id, kind=kind, task_version=t.version, due_at=due, attempts=0))


async def arm_ding(conn: AsyncConnection, t: TaskRow, now: datetime) -> None:
    """An out-of-band call to the new owner, run (and retried) by the timer job right away."""
    await conn.execute(
        insert(task_timers).values(task_id=t.id, kind="ding", task_version=t.version, due_at=now, attempts=0)
    )


async def _record(
    tx: Txn,
    index: OrgIndex,
    t: TaskRow,
    c: Change,
    from_state: str | None,
    extra_people: Sequence[int],
) -> int:
    conn, now = tx.conn, tx.now
    ev_id = (
        await conn.execute(
            insert(task_events)
            .values(
                task_id=t.id,
                version=t.version,
                action=c.action.value,
                from_state=from_state,
                to_state=t.state,
                actor_person_id=c.actor_person_id,
                actor_position_id=c.actor_position_id,
                at=now,
                comment=c.comment,
                attachments=json.dumps(c.attachments),
                data=json.dumps(c.data, ensure_ascii=False),
            )
            .returning(task_events.c.id)
        )
    ).scalar_one()
    await _replace_timers(conn, t, now, fresh=from_state is None)
    _announce(tx, index, t, c, from_state, extra_people)
    return int(ev_id)


def _announce(tx: Txn, index: OrgIndex, t: TaskRow, c: Change, from_state: str | None, extra: Sequence[int]) -> None:
    """The change's outbox row and the involved persons' event (written by the ``Txn`` at the end)."""
    body: dict[str, Any] = {"task": t.summary(), "event": _event_dict(t, c, from_state, tx.now)}
    tx.record(OUTBOX_TYPES[c.action], "task", t.id, body)
    kind = "task.created" if c.action == Action.CREATE else "task.updated"
    payload = _changed(body, c.urgent).text()
    tx.emit(NewEvent(kind, payload, involved_persons(index, t, extra)))


async def write_new_task(
    tx: Txn, index: OrgIndex, values: dict[str, Any], change: Change
) -> tuple[TaskRow | None, int]:
    """Insert a task (version 1, state created) with its history, timer, outbox row and event.

    Returns the row and the history row id; ``(None, 0)`` when the creator's
    idempotency key already made this task.
    """
    from kernel.db.dialect import insert_ignore

    conn, now = tx.conn, tx.now
    stmt = (
        insert_ignore(conn, tasks, ["creator_person_id", "client_msg_id", "owner_position_id"])
        .values(**values, state=State.CREATED.value, version=1, created_at=now, updated_at=now)
        .returning(*tasks.c)  # the whole row: reading it back was one more statement per task
    )
    row = (await conn.execute(stmt)).first()
    if row is None:
        return None, 0
    t = TaskRow.from_row(row)
    return t, await _record(tx, index, t, change, None, ())


async def write_new_tasks_pg(
    tx: Txn, index: OrgIndex, base: dict[str, Any], owners: list[tuple[int, int, int]], change: Change
) -> list[tuple[TaskRow, int]]:
    """PostgreSQL: :func:`write_new_task` for every owner at once (one statement; ``storage.insert_new_tasks``).

    ``owners``: (owner position, owner unit, origin unit) per task. Returns each task made
    with its history row id; owners this ``client_msg_id`` already made are skipped.

    Raises:
        BadRequest: ``unknown_category`` (nothing was written).
    """
    history = {
        "action": change.action.value, "to_state": State.CREATED.value, "actor_person_id": change.actor_person_id,
        "actor_position_id": change.actor_position_id, "attachments": json.dumps(change.attachments),
        "data": json.dumps(change.data, ensure_ascii=False),
    }  # fmt: skip
    made, cat = await insert_new_tasks(tx.conn, base, owners, history, tx.now)
    if cat is None:
        raise unknown_category(str(base["category"]))
    for t, _ in made:
        _announce(tx, index, t, change, None, ())
    return made


async def write_change(
    tx: Txn,
    index: OrgIndex,
    before: TaskRow,
    seen_version: int,
    to_state: State,
    change: Change,
    *,
    set_values: dict[str, Any] | None = None,
    category: Category | None = None,
) -> tuple[TaskRow, int]:
    """Apply one transition with ``WHERE version = seen_version``; a lost race raises ``stale_version``.

    Returns the new row and the history row id.
    """
    conn, now = tx.conn, tx.now
    values: dict[str, Any] = {"state": to_state.value, "version": before.version + 1, "updated_at": now}
    values.update(set_values or {})
    res = await conn.execute(
        update(tasks).where(tasks.c.id == before.id, tasks.c.version == seen_version).values(**values)
    )
    if res.rowcount != 1:
        current = await load_task(conn, before.id)
        raise stale(before.id, seen_version, current.version)
    after = await load_task(conn, before.id)
    extra = [before.creator_person_id]
    extra_people = sorted(_positions_persons(index, (before.owner_position_id, *before.pool)))
    if category is not None and category.ding and change.urgent:
        await arm_ding(conn, after, now)
    return after, await _record(tx, index, after, change, before.state, [*extra, *extra_people])


@dataclass(slots=True)
class Planned:
    """One transition of a batch: the locked row as read, the column changes, the history entry."""

    before: TaskRow
    values: dict[str, Any]
    change: Change
    to_state: State


_JSON_FIELDS = ("pool", "watchers")
_HISTORY_COLUMNS = (
    "task_id", "version", "action", "from_state", "to_state", "actor_person_id", "actor_position_id", "at",
    "comment", "attachments", "data",
)  # fmt: skip
_TIMER_COLUMNS = ("task_id", "kind", "task_version", "due_at", "attempts", "claimed_by", "claimed_until")
_OUTBOX_COLUMNS = ("event_id", "type", "aggregate", "aggregate_id", "payload", "created_at", "published_at")
_YIELD_EVERY = 25


def _after(before: TaskRow, values: dict[str, Any]) -> TaskRow:
    fields: dict[str, Any] = {k: (tuple(json.loads(v)) if k in _JSON_FIELDS else v) for k, v in values.items()}
    return replace(before, **fields)


@dataclass(slots=True)
class Written:
    """What a batch wrote that the caller acts on: events to append, DING timers armed."""

    events: list[NewEvent]
    #: The DING timers inserted (id, task_id, kind, task_version, attempts), when leased to the caller.
    dings: list[dict[str, Any]] = field(default_factory=list)


async def write_changes_locked(
    conn: AsyncConnection,
    index: OrgIndex,
    planned: list[Planned],
    now: datetime,
    *,
    ding_lease: tuple[str, datetime] | None = None,
    holders: dict[int, frozenset[int]] | None = None,
) -> Written:
    """Apply many transitions in a handful of statements (the deadline job's batches).

    The caller must hold the tasks locked in this transaction (read with
    ``FOR UPDATE`` on PostgreSQL; SQLite's single writer) and must have checked
    each version, so no update can lose a race. Every ``values`` of a batch has
    the same keys. Returns the events to append, one per task.

    With ``ding_lease`` (token, until) the DING timers of urgent changes are
    inserted already leased to the caller, who calls them right after the
    commit: no claiming transaction, and the lease covers a crash in between.
    ``holders`` (position → holders) may be kept by the caller across batches
    routed with the same ``index``: resolving the holders was ~10 % of a batch.
    """
    if not planned:
        return Written([])
    updates: list[dict[str, Any]] = []
    rows: list[TaskRow] = []
    history: list[dict[str, Any]] = []
    people_extra: list[list[int]] = []
    cache: dict[int, frozenset[int]] = {} if holders is None else holders
    for i, p in enumerate(planned):
        if i and i % _YIELD_EVERY == 0:
            await asyncio.sleep(0)  # let other requests run between slices of a big batch
        values = {**p.values, "state": p.to_state.value, "version": p.before.version + 1, "updated_at": now}
        updates.append({**values, "_id": p.before.id, "_version": p.before.version})
        after = _after(p.before, values)
        rows.append(after)
        history.append({
            "task_id": after.id, "version": after.version, "action": p.change.action.value,
            "from_state": p.before.state, "to_state": after.state, "actor_person_id": p.change.actor_person_id,
            "actor_position_id": p.change.actor_position_id, "at": now, "comment": p.change.comment,
            "attachments": json.dumps(p.change.attachments), "data": json.dumps(p.change.data, ensure_ascii=False),
        })  # fmt: skip
        people_extra.append(
            [
                p.before.creator_person_id,
                *_positions_persons(index, (p.before.owner_position_id, *p.before.pool), cache),
            ]
        )
    await update_tasks(conn, updates)
    await bulk_insert(conn, task_events, _HISTORY_COLUMNS, [tuple(h[c] for c in _HISTORY_COLUMNS) for h in history])
    tt = task_timers
    await conn.execute(
        update(tt)
        .where(tt.c.task_id.in_([t.id for t in rows]), tt.c.done_at.is_(None), tt.c.kind != "ding")
        .values(done_at=now, outcome="superseded", claimed_until=None)
    )
    token, until = ding_lease or (None, None)
    timers: list[tuple[Any, ...]] = []
    for t, p in zip(rows, planned, strict=True):
        if t.state == State.CREATED and t.accept_due_at is not None:
            timers.append((t.id, "accept", t.version, t.accept_due_at, 0, None, None))
        elif t.state in (State.ACCEPTED, State.IN_PROGRESS) and t.resolve_due_at is not None:
            timers.append((t.id, "resolve", t.version, t.resolve_due_at, 0, None, None))
        if p.change.urgent:
            timers.append((t.id, "ding", t.version, now, 0, None, None) if token is None else
                          (t.id, "ding", t.version, now, 1, token, until))  # fmt: skip
    # Leased rows apart: on SQLite bulk_insert converts the datetime columns of the first row's shape.
    leased = [x for x in timers if x[5] is not None]
    await bulk_insert(conn, tt, _TIMER_COLUMNS, [x for x in timers if x[5] is None])
    await bulk_insert(conn, tt, _TIMER_COLUMNS, leased)
    armed: list[dict[str, Any]] = []
    if leased:
        returned = await conn.execute(
            select(tt.c.id, tt.c.task_id, tt.c.kind, tt.c.task_version, tt.c.attempts)
            .where(
                tt.c.task_id.in_([t.id for t in rows]), tt.c.kind == "ding", tt.c.claimed_by == token,
                tt.c.done_at.is_(None),
            )
            .order_by(tt.c.id)
        )  # fmt: skip
        armed = [dict(r._mapping) for r in returned]
    out_rows, events = [], []
    for i, (t, p, extra) in enumerate(zip(rows, planned, people_extra, strict=True)):
        if i and i % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        body: dict[str, Any] = {"task": t.summary(), "event": _event_dict(t, p.change, p.before.state, now)}
        changed = _changed(body, False)
        # The event's JSON is the outbox row's payload too: encode the body once (the batch's largest CPU item).
        text = changed.text()
        row = outbox.event_row(OUTBOX_TYPES[p.change.action], "task", t.id, text, now)
        out_rows.append(tuple(row[c] for c in _OUTBOX_COLUMNS))
        payload = changed.model_copy(update={"urgent": True}).text() if p.change.urgent else text

        events.append(NewEvent("task.updated", payload, involved_persons(index, t, extra, cache)))
    await bulk_insert(conn, outbox_events, _OUTBOX_COLUMNS, out_rows)
    return Written(events, armed)
