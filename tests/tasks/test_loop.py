"""The closed loop in the domain services, on SQLite and PostgreSQL: report → task → … → closed."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from sqlalchemy import func, select

from kernel.errors import BadRequest, Conflict, ErrorCode, Forbidden, NotFound
from messaging.outbox import read_unpublished
from messaging.tasks.lifecycle import Action
from messaging.tasks.reports import Filing
from messaging.tasks.schema import outbox_events, reports, task_events, task_timers, tasks
from org_tree.selectors import RoleIn, RoleUnder, UnitRef
from tests.tasks.conftest import TaskWorld

PHOTO = "ab" * 32


async def _count(w: TaskWorld, table: Any) -> int:
    async with w.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _counts(w: TaskWorld) -> tuple[int, ...]:
    return tuple([await _count(w, t) for t in (tasks, task_events, task_timers, reports, outbox_events)])


def _events_of(w: TaskWorld, person: int) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for groups in w.notified:
        for g in groups:
            if any(p == person for p, _ in g.recipients):
                out.append((g.kind, json.loads(g.payload)))
    return out


async def test_report_walks_the_whole_loop(tw: TaskWorld) -> None:
    w = tw
    worker, grid_pos = w.grid_worker_with_held_chain()
    village = w.index.parent(w.unit_of(grid_pos))
    chief_pos = w.position_in("river_chief", village)
    chief = w.holder(chief_pos)
    report, dup = await w.reports.file(
        worker, grid_pos, Filing("r1", "river_litter", "河里有垃圾", 28.97, 118.87, [PHOTO])
    )
    assert not dup and report["grid_unit_id"] == w.index.unit_id(w.unit_of(grid_pos))
    tid = report["task_id"]
    task = await w.tasks.get(chief, tid)
    assert task["owner_position_id"] == chief_pos and task["state"] == "created" and task["version"] == 1
    # the chief got task.created in real time, the reporter too
    assert any(k == "task.created" and p["task"]["task_id"] == tid for k, p in _events_of(w, chief))
    assert any(k == "task.created" for k, _ in _events_of(w, worker))

    w.clock.advance(60)
    t = await w.tasks.act(chief, chief_pos, tid, Action.ACCEPT, 1)
    w.clock.advance(600)
    t = await w.tasks.act(chief, chief_pos, tid, Action.START, t.version)
    w.clock.advance(600)
    t = await w.tasks.act(chief, chief_pos, tid, Action.RESOLVE, t.version, comment="已清理", attachments=[PHOTO])
    t = await w.tasks.act(worker, grid_pos, tid, Action.VERIFY, t.version)
    w.clock.advance(60)
    t = await w.tasks.act(worker, grid_pos, tid, Action.CLOSE, t.version)
    assert t.state == "closed" and t.version == 6

    full = await w.tasks.get(worker, tid)
    assert [h["action"] for h in full["history"]] == ["create", "accept", "start", "resolve", "verify", "close"]
    assert full["history"][3]["attachments"] == [PHOTO] and full["history"][3]["comment"] == "已清理"
    assert full["history"][4]["actor"] == {"person_id": worker, "position_id": grid_pos}
    # each transition reached the chief (owner) as task.updated, in order
    versions = [p["task"]["version"] for k, p in _events_of(w, chief) if p["task"]["task_id"] == tid]
    assert versions == [1, 2, 3, 4, 5, 6]
    # measured: accept after 60 s, resolve after 1260 s, close after 1320 s
    assert ("accept", "river_litter", 60.0) in w.observed
    assert ("resolve", "river_litter", 1260.0) in w.observed
    assert ("close", "river_litter", 1320.0) in w.observed
    # the outbox has the report and every transition, in order
    async with w.db.read() as conn:
        evs = await read_unpublished(conn)
    assert [e.type for e in evs] == [
        "task.created", "report.filed", "task.accepted", "task.started", "task.resolved", "task.verified",
        "task.closed",
    ]  # fmt: skip
    assert len({e.event_id for e in evs}) == len(evs)
    # no deadline timer left open on a closed task
    async with w.db.read() as conn:
        open_timers = (
            await conn.execute(
                select(func.count()).where(task_timers.c.task_id == tid, task_timers.c.done_at.is_(None))
            )
        ).scalar_one()
    assert open_timers == 0


async def test_two_people_at_once_one_wins_the_other_gets_stale_version(tw: TaskWorld) -> None:
    w = tw
    worker, grid_pos = w.grid_worker_with_held_chain()
    report, _ = await w.reports.file(worker, grid_pos, Filing("r2", "river_litter", "垃圾", 28.9, 118.8))
    tid = report["task_id"]
    task = await w.tasks.get(worker, tid)
    chief_pos = task["owner_position_id"]
    chief = w.holder(chief_pos)
    results = await asyncio.gather(
        w.tasks.act(chief, chief_pos, tid, Action.ACCEPT, 1),
        w.tasks.act(worker, grid_pos, tid, Action.CANCEL, 1),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1 and len(losses) == 1
    assert isinstance(losses[0], Conflict) and losses[0].code == ErrorCode.STALE_VERSION
    after = await w.tasks.get(worker, tid)
    assert after["version"] == 2 and after["state"] == wins[0].state
    assert len(after["history"]) == 2


async def test_bad_transitions_and_actors_change_nothing(tw: TaskWorld) -> None:
    w = tw
    worker, grid_pos = w.grid_worker_with_held_chain()
    report, _ = await w.reports.file(worker, grid_pos, Filing("r3", "river_litter", "垃圾", 28.9, 118.8))
    tid = report["task_id"]
    chief_pos = (await w.tasks.get(worker, tid))["owner_position_id"]
    chief = w.holder(chief_pos)
    before = await _counts(w)
    with pytest.raises(Conflict) as exc:
        await w.tasks.act(chief, chief_pos, tid, Action.RESOLVE, 1)  # must accept first
    assert exc.value.code == ErrorCode.INVALID_TRANSITION
    with pytest.raises(Forbidden):
        await w.tasks.act(worker, grid_pos, tid, Action.ACCEPT, 1)  # the reporter is not the owner
    with pytest.raises(Forbidden):
        await w.tasks.act(chief, grid_pos, tid, Action.ACCEPT, 1)  # does not hold that position
    with pytest.raises(Conflict) as exc:
        await w.tasks.act(chief, chief_pos, tid, Action.ACCEPT, 7)
    assert exc.value.code == ErrorCode.STALE_VERSION
    stranger = next(p for p, _ in w.held("governor"))
    with pytest.raises(NotFound):
        await w.tasks.get(stranger, tid)
    with pytest.raises(NotFound):
        await w.tasks.act(stranger, chief_pos, tid, Action.ACCEPT, 1)
    with pytest.raises(BadRequest):
        await w.tasks.act(chief, chief_pos, tid, Action.ACCEPT, 1, attachments=["not-a-digest"])
    assert await _counts(w) == before


async def test_bad_reports_store_nothing(tw: TaskWorld) -> None:
    w = tw
    worker, grid_pos = w.grid_worker_with_held_chain()
    before = await _counts(w)
    cases: list[tuple[Filing, int, type[Exception], str | None]] = [
        (Filing("b1", "no_such", "x", 28.9, 118.8), grid_pos, BadRequest, ErrorCode.UNKNOWN_CATEGORY),
        (Filing("b2", "general", "x", 28.9, 118.8), grid_pos, BadRequest, ErrorCode.UNKNOWN_CATEGORY),
        (Filing("b3", "river_litter", "x", 91.0, 118.8), grid_pos, BadRequest, ErrorCode.INVALID_LOCATION),
        (Filing("b4", "river_litter", "x", 28.9, float("nan")), grid_pos, BadRequest, ErrorCode.INVALID_LOCATION),
        (Filing("b5", "river_litter", "", 28.9, 118.8), grid_pos, BadRequest, ErrorCode.INVALID_TEXT),
        (Filing("b6", "river_litter", "x", 28.9, 118.8, ["zz"]), grid_pos, BadRequest, None),
    ]
    for filing, pos, err, code in cases:
        with pytest.raises(err) as exc:
            await w.reports.file(worker, pos, filing)
        if code is not None:
            assert exc.value.code == code, filing  # type: ignore[attr-defined]
    # a village position is not a grid position
    vpos = w.position_in("river_chief", w.index.parent(w.unit_of(grid_pos)))
    with pytest.raises(Forbidden):
        await w.reports.file(w.holder(vpos), vpos, Filing("b7", "river_litter", "x", 28.9, 118.8))
    assert await _counts(w) == before


async def test_routing_rules_and_beyond_capacity(tw: TaskWorld) -> None:
    w = tw
    worker, grid_pos = w.grid_worker_with_held_chain()
    _, _, township = w.units_up(grid_pos, 3)
    r1, _ = await w.reports.file(worker, grid_pos, Filing("c1", "illegal_building", "违建", 28.9, 118.8))
    t1 = await w.tasks.get(worker, r1["task_id"])
    assert t1["owner_position_id"] == w.position_in("enforcement_captain", township)
    r2, _ = await w.reports.file(
        worker, grid_pos, Filing("c2", "river_litter", "大量垃圾", 28.9, 118.8, beyond_capacity=True)
    )
    t2 = await w.tasks.get(worker, r2["task_id"])
    assert t2["owner_position_id"] == w.position_in("river_chief", township)
    assert t2["escalation_level"] == 1
    # idempotent filing
    again, dup = await w.reports.file(worker, grid_pos, Filing("c2", "river_litter", "大量垃圾", 28.9, 118.8))
    assert dup and again["report_id"] == r2["report_id"]


async def test_overdue_task_escalates_once_with_ding(tw: TaskWorld, caplog: pytest.LogCaptureFixture) -> None:
    w = tw
    caplog.set_level(logging.INFO, logger="messaging.notices.notifier")
    worker, grid_pos = w.grid_worker_with_held_chain()
    _, village, township = w.units_up(grid_pos, 3)
    report, _ = await w.reports.file(worker, grid_pos, Filing("e1", "river_litter", "垃圾", 28.9, 118.8))
    tid = report["task_id"]
    assert await w.timers.run_due() == []  # nothing due yet
    w.clock.advance(7200 + 1)  # river_litter: accept within 2 h
    out = await w.timers.run_due()
    assert [o.status for o in out] == ["escalated", "dinged"]
    t = await w.tasks.get(worker, tid)
    assert t["owner_position_id"] == w.position_in("river_chief", township)
    assert t["escalation_level"] == 1 and t["state"] == "created"
    assert t["history"][-1]["action"] == "escalate" and t["history"][-1]["actor"] is None
    assert t["history"][-1]["data"]["reason"] == "accept_overdue"
    new_chief = w.holder(t["owner_position_id"])
    old_chief = w.holder(w.position_in("river_chief", village))
    for person in (new_chief, old_chief, worker):
        assert any(p.get("urgent") and p["event"]["action"] == "escalate" for _, p in _events_of(w, person))
    assert [e.idempotency_key for e in w.notifier.sent] == [f"task-{tid}-escalation-1"]
    # the development notifier's log line names the task, not a notice of the same number
    lines = [r.getMessage() for r in caplog.records if r.name == "messaging.notices.notifier"]
    assert lines == [f"DING escalation task-{tid}-escalation-1: 1 recipient(s) of task {tid}"]
    assert await w.timers.run_due() == []  # exactly once
    # the new owner rejects: it climbs again at once
    t2 = await w.tasks.act(new_chief, t["owner_position_id"], tid, Action.REJECT, t["version"], comment="非本级")
    assert t2.escalation_level == 2 and t2.owner_position_id != t["owner_position_id"]


async def test_direct_tasks_each_and_shared(tw: TaskWorld) -> None:
    w = tw
    county = w.index.unit("990101")
    head, head_pos = next((p, pos) for p, pos in w.held("county_head") if w.unit_of(pos) == county)
    # RoleIn matches the role in that unit only: a township has no village secretary
    sel = RoleIn("village_secretary", UnitRef(code=w.index.unit_code(w.index.children(county)[0])))
    sel2 = RoleUnder("village_secretary", UnitRef(code=w.index.unit_code(w.index.children(county)[0])))
    made = await w.tasks.create(
        head, head_pos, selector=sel2, shared=False, category="general", title="防汛检查", body="",
        client_msg_id="d1",
    )  # fmt: skip
    assert len(made) == 15 and len({t.owner_position_id for t in made}) == 15
    again = await w.tasks.create(
        head, head_pos, selector=sel2, shared=False, category="general", title="防汛检查", body="",
        client_msg_id="d1",
    )  # fmt: skip
    assert sorted(t.id for t in again) == sorted(t.id for t in made)
    shared = await w.tasks.create(
        head, head_pos, selector=sel2, shared=True, category="general", title="值班", body="", client_msg_id="d2"
    )
    assert len(shared) == 1 and len(shared[0].pool) == 15
    taker_pos = shared[0].pool[3]
    taker = w.holder(taker_pos)
    t = await w.tasks.act(taker, taker_pos, shared[0].id, Action.ACCEPT, 1)
    assert t.owner_position_id == taker_pos and t.pool == ()
    # a colleague of the pool who tapped accept at the same moment learns someone took it (409),
    # not that the task vanished; an outsider still gets the 404 of an unknown task
    late_pos = shared[0].pool[5]
    with pytest.raises(Conflict) as lost:
        await w.tasks.act(w.holder(late_pos), late_pos, shared[0].id, Action.ACCEPT, 1)
    assert lost.value.code == ErrorCode.CONFLICT
    assert lost.value.data == {"task_id": shared[0].id, "accepted_by_position_id": taker_pos}
    outsider, outsider_pos = next((p, pos) for p, pos in w.held("village_secretary") if pos not in shared[0].pool)
    with pytest.raises(NotFound):
        await w.tasks.act(outsider, outsider_pos, shared[0].id, Action.ACCEPT, 1)
    # The shared task is stored with its first pool position as nominal owner: when that
    # position is the one to accept, the pool closes all the same (it kept the others
    # involved, reading the task and answered stale_version / forbidden, not the 409 above).
    first = await w.tasks.create(
        head, head_pos, selector=sel2, shared=True, category="general", title="值守", body="", client_msg_id="d5"
    )
    nominal = first[0].owner_position_id
    assert nominal == first[0].pool[0]
    t = await w.tasks.act(w.holder(nominal), nominal, first[0].id, Action.ACCEPT, 1)
    assert t.owner_position_id == nominal and t.pool == ()
    detail = await w.tasks.get(w.holder(nominal), first[0].id)
    assert detail["history"][-1]["data"]["pool"] == list(first[0].pool)
    late_pos = first[0].pool[2]
    for seen in (1, 2):
        with pytest.raises(Conflict) as lost:
            await w.tasks.act(w.holder(late_pos), late_pos, first[0].id, Action.ACCEPT, seen)
        assert lost.value.code == ErrorCode.CONFLICT
        assert lost.value.data == {"task_id": first[0].id, "accepted_by_position_id": nominal}
    with pytest.raises(NotFound):
        await w.tasks.get(w.holder(late_pos), first[0].id)
    with pytest.raises(BadRequest):
        await w.tasks.create(
            head, head_pos, selector=sel, shared=False, category="general", title="x", body="", client_msg_id="d3"
        )
    with pytest.raises(BadRequest) as exc:
        await w.tasks.create(
            head, head_pos, selector=sel2, shared=False, category="nope", title="x", body="", client_msg_id="d4"
        )
    assert exc.value.code == ErrorCode.UNKNOWN_CATEGORY
