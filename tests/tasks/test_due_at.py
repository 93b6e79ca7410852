"""A task's 截止时间 (``due_at``): its deadlines, their timers on the injected clock, and its checks (both backends).

``general`` (the category used here) gives 1 day to accept and 7 days to resolve once accepted.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from kernel.errors import BadRequest
from messaging.outbox import read_unpublished
from messaging.tasks.lifecycle import Action
from messaging.tasks.model import TaskRow
from messaging.tasks.schema import task_events, task_timers, tasks
from org_tree.selectors import RoleIn, UnitRef
from tests.tasks.conftest import TaskWorld

DAY = timedelta(days=1)
WEEK = timedelta(days=7)


def _county_head(w: TaskWorld) -> tuple[int, int, int]:
    """A county head (person, position) and the first township under the county."""
    county = w.index.unit("990101")
    head, head_pos = next((p, pos) for p, pos in w.held("county_head") if w.unit_of(pos) == county)
    return head, head_pos, w.index.children(county)[0]


async def _task(w: TaskWorld, key: str, due_at: datetime | None) -> tuple[int, int, TaskRow]:
    """One task from the county head to a township's head, due at ``due_at``: (creator, their position, task)."""
    head, head_pos, township = _county_head(w)
    made = await w.tasks.create(
        head, head_pos, selector=RoleIn("township_head", UnitRef(code=w.index.unit_code(township))), shared=False,
        category="general", title="防汛检查", body="", client_msg_id=key, due_at=due_at,
    )  # fmt: skip
    assert len(made) == 1 and not made.duplicate
    return head, head_pos, made[0]


async def _open_timers(w: TaskWorld, task_id: int) -> list[tuple[str, datetime]]:
    async with w.db.read() as conn:
        rows = await conn.execute(
            select(task_timers.c.kind, task_timers.c.due_at)
            .where(task_timers.c.task_id == task_id, task_timers.c.done_at.is_(None), task_timers.c.kind != "ding")
        )  # fmt: skip
        return [(str(r.kind), r.due_at) for r in rows]


def _payloads(w: TaskWorld, task_id: int) -> list[dict[str, Any]]:
    out = []
    for groups in w.notified:
        for g in groups:
            body = json.loads(g.payload)
            if body["task"]["task_id"] == task_id:
                out.append(body)
    return out


async def test_a_due_at_sooner_than_the_accept_window_is_the_accept_deadline_and_escalates_then(
    tw: TaskWorld,
) -> None:
    w = tw
    t0 = w.clock.now()
    due = t0 + timedelta(hours=2)
    _, _, t = await _task(w, "due-1", due)
    assert t.due_at == due and t.accept_due_at == due  # not t0 + 1 day: the owner must accept before it is due
    assert t.summary()["due_at"] == "2026-01-01T02:00:00Z"
    assert await _open_timers(w, t.id) == [("accept", due)]
    created = _payloads(w, t.id)
    assert [p["task"]["due_at"] for p in created] == ["2026-01-01T02:00:00Z"]
    async with w.db.read() as conn:
        outbox = [r.payload for r in await read_unpublished(conn) if r.aggregate_id == t.id]
    assert [o["task"]["due_at"] for o in outbox] == ["2026-01-01T02:00:00Z"]

    w.clock.advance(2 * 3600 - 1)
    assert await w.timers.run_due() == []  # a second early: nothing
    w.clock.advance(2)
    out = await w.timers.run_due()
    assert [(o.task_id, o.status) for o in out] == [(t.id, "escalated")]
    after = await w.tasks.get(w.holder(t.creator_position_id), t.id)
    assert after["history"][-1]["data"]["reason"] == "accept_overdue" and after["escalation_level"] == 1
    # the task keeps its due_at; the new owner gets the category's day (its due_at passed: a deadline
    # in the past would escalate it again at once, up to the top)
    assert after["due_at"] == "2026-01-01T02:00:00Z"
    now = w.clock.now()
    assert await _open_timers(w, t.id) == [("accept", now + DAY)]
    assert await w.timers.run_due() == []
    # accepted after its due_at: the category's 7 days from the acceptance, not a deadline already past
    w.clock.advance(60)
    new_owner = int(after["owner_position_id"])
    accepted = await w.tasks.act(w.holder(new_owner), new_owner, t.id, Action.ACCEPT, after["version"])
    assert accepted.resolve_due_at == w.clock.now() + WEEK and accepted.due_at == due
    assert await _open_timers(w, t.id) == [("resolve", w.clock.now() + WEEK)]
    assert await w.timers.run_due() == []


async def test_the_resolve_deadline_is_the_due_at_and_survives_return_and_reassign(tw: TaskWorld) -> None:
    w = tw
    t0 = w.clock.now()
    due = t0 + timedelta(days=3)
    head, head_pos, t = await _task(w, "due-2", due)
    assert t.accept_due_at == t0 + DAY  # the category's day is sooner than the due_at
    owner = w.holder(t.owner_position_id)
    w.clock.advance(3600)
    t = await w.tasks.act(owner, t.owner_position_id, t.id, Action.ACCEPT, 1)
    assert t.resolve_due_at == due  # not accepted + 7 days
    assert await _open_timers(w, t.id) == [("resolve", due)]
    assert _payloads(w, t.id)[-1]["task"]["resolve_due_at"] == "2026-01-04T00:00:00Z"
    t = await w.tasks.act(owner, t.owner_position_id, t.id, Action.RESOLVE, t.version)
    t = await w.tasks.act(head, head_pos, t.id, Action.RETURN, t.version, comment="再查一遍")
    assert t.resolve_due_at == due and await _open_timers(w, t.id) == [("resolve", due)]
    # reassigned 2½ days in: the new owner's accept deadline is the due_at, half a day away, not a day
    w.clock.advance(int(2.5 * 86400) - 3600)
    other = next(pos for _, pos in w.held("township_head", under=w.index.unit("990101")) if pos != t.owner_position_id)
    t = await w.tasks.act(head, head_pos, t.id, Action.REASSIGN, t.version, to_position=other)
    assert (t.state, t.due_at, t.accept_due_at) == ("created", due, due)
    assert await _open_timers(w, t.id) == [("accept", due)]
    t = await w.tasks.act(w.holder(other), other, t.id, Action.ACCEPT, t.version)
    assert t.resolve_due_at == due
    # at the due_at the task climbs: a resolve deadline, escalated like any other
    w.clock.advance(int(0.5 * 86400) + 1)
    out = await w.timers.run_due()
    assert [(o.task_id, o.kind, o.status) for o in out] == [(t.id, "resolve", "escalated")]
    full = await w.tasks.get(head, t.id)
    assert full["history"][-1]["data"]["reason"] == "resolve_overdue"
    assert full["due_at"] == "2026-01-04T00:00:00Z" and full["accept_due_at"] is not None
    assert await _open_timers(w, t.id) == [("accept", w.clock.now() + DAY)]


async def test_without_due_at_the_windows_are_the_categorys(tw: TaskWorld) -> None:
    w = tw
    t0 = w.clock.now()
    _, _, t = await _task(w, "due-3", None)
    assert (t.due_at, t.accept_due_at) == (None, t0 + DAY)
    assert t.summary()["due_at"] is None and _payloads(w, t.id)[0]["task"]["due_at"] is None
    t = await w.tasks.act(w.holder(t.owner_position_id), t.owner_position_id, t.id, Action.ACCEPT, 1)
    assert t.resolve_due_at == t0 + WEEK


async def _counts(w: TaskWorld) -> list[int]:
    async with w.db.read() as conn:
        return [
            (await conn.execute(select(func.count()).select_from(x))).scalar_one()
            for x in (tasks, task_events, task_timers)
        ]


async def test_a_due_at_not_between_a_minute_and_366_days_ahead_is_refused_and_stores_nothing(tw: TaskWorld) -> None:
    w = tw
    now = w.clock.now()
    before = await _counts(w)
    head, head_pos, township = _county_head(w)
    for i, bad in enumerate((
        now - timedelta(hours=1), now, now + timedelta(seconds=59), now + timedelta(days=366, seconds=1),
        datetime(2026, 1, 2, 9, 0),  # no time zone
    )):  # fmt: skip
        with pytest.raises(BadRequest) as exc:
            await _task(w, f"bad-{i}", bad)
        assert exc.value.data["field"] == "due_at", bad
        with pytest.raises(BadRequest) as exc:
            await w.tasks.create_for_notice(head, 1, client_msg_id=f"bad-n{i}", due_at=bad)
        assert exc.value.data["field"] == "due_at", bad
    assert await _counts(w) == before
    # the bounds themselves are allowed
    _, _, a = await _task(w, "edge-1", now + timedelta(minutes=1))
    _, _, b = await _task(w, "edge-2", now + timedelta(days=366))
    assert (a.due_at, b.due_at) == (now + timedelta(minutes=1), now + timedelta(days=366))
    assert a.accept_due_at == a.due_at and b.accept_due_at == now + DAY


async def test_a_retry_with_another_due_at_answers_what_the_first_made(tw: TaskWorld) -> None:
    """docs/protocol.md "Retries of a create": the same key writes nothing and answers the first request's tasks."""
    w = tw
    due = w.clock.now() + timedelta(days=2)
    head, head_pos, t = await _task(w, "due-r", due)
    before = await _counts(w)
    _, _, township = _county_head(w)
    again = await w.tasks.create(
        head, head_pos, selector=RoleIn("township_head", UnitRef(code=w.index.unit_code(township))), shared=False,
        category="general", title="防汛检查", body="", client_msg_id="due-r", due_at=due + timedelta(days=5),
    )  # fmt: skip
    assert again.duplicate and [(x.id, x.due_at, x.accept_due_at) for x in again] == [(t.id, due, t.accept_due_at)]
    assert await _counts(w) == before


async def test_a_notices_tasks_take_a_due_at(tw: TaskWorld) -> None:
    from tests.tasks.test_notice_tasks import _send

    w = tw
    head, head_pos, nid, positions = await _send(w)
    due = w.clock.now() + timedelta(hours=6)
    made = await w.tasks.create_for_notice(head, nid, client_msg_id="nt-due", due_at=due)
    assert sorted(t.owner_position_id for t in made) == positions
    assert {(t.due_at, t.accept_due_at) for t in made} == {(due, due)}
    t = await w.tasks.act(w.holder(made[0].owner_position_id), made[0].owner_position_id, made[0].id, Action.ACCEPT, 1)
    assert t.resolve_due_at == due
