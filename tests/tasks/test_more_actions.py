"""Return, reassign, comment, cancel, and the closed-loop figures rolled up the tree (both backends)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kernel.errors import BadRequest, Conflict, ErrorCode, Forbidden
from messaging.tasks.lifecycle import Action
from messaging.tasks.reports import Filing
from messaging.tasks.stats import unit_stats
from tests.tasks.conftest import TaskWorld


async def _reported(w: TaskWorld, client_msg_id: str) -> tuple[int, int, int, int]:
    """A grid worker's river-litter report: (worker, their grid position, its village, the task)."""
    worker, grid_pos = w.grid_worker_with_held_chain()
    report, _ = await w.reports.file(worker, grid_pos, Filing(client_msg_id, "river_litter", "垃圾", 28.9, 118.8))
    return worker, grid_pos, w.index.parent(w.unit_of(grid_pos)), int(report["task_id"])


async def test_return_reassign_comment_cancel(tw: TaskWorld) -> None:
    w = tw
    worker, grid_pos, village, tid = await _reported(w, "m1")
    chief_pos = w.position_in("river_chief", village)
    chief = w.holder(chief_pos)
    t = await w.tasks.act(chief, chief_pos, tid, Action.ACCEPT, 1)
    t = await w.tasks.act(chief, chief_pos, tid, Action.RESOLVE, t.version)
    w.clock.advance(30)
    t = await w.tasks.act(worker, grid_pos, tid, Action.RETURN, t.version, comment="没清干净")
    assert t.state == "in_progress" and t.resolved_at is None
    assert t.resolve_due_at == w.clock.now() + timedelta(seconds=86400)
    t = await w.tasks.act(chief, chief_pos, tid, Action.COMMENT, t.version, comment="明天处理")
    assert t.state == "in_progress" and t.version == 5
    # reassign: only the creator side, only within its jurisdiction (a grid worker's chain reaches up)
    with pytest.raises(Forbidden):
        await w.tasks.act(chief, chief_pos, tid, Action.REASSIGN, t.version, to_position=grid_pos)
    director = w.position_in("village_director", village)
    t = await w.tasks.act(worker, grid_pos, tid, Action.REASSIGN, t.version, to_position=director)
    assert t.owner_position_id == director and t.state == "created" and chief_pos in t.watchers
    # the old owner still sees it, but may no longer act as owner
    full = await w.tasks.get(chief, tid)
    assert full["history"][-1]["data"] == {"from_owner": chief_pos, "to_owner": director}
    with pytest.raises(Forbidden):
        await w.tasks.act(chief, chief_pos, tid, Action.ACCEPT, t.version)
    t = await w.tasks.act(worker, grid_pos, tid, Action.CANCEL, t.version)
    assert t.state == "cancelled"
    with pytest.raises(Conflict) as exc:
        await w.tasks.act(worker, grid_pos, tid, Action.CANCEL, t.version)
    assert exc.value.code == ErrorCode.INVALID_TRANSITION
    assert await w.timers.run_due(w.clock.now() + timedelta(days=30)) == []


async def test_stats_roll_up_from_grid_to_county(tw: TaskWorld) -> None:
    w = tw
    worker, grid_pos = w.grid_worker_with_held_chain()
    grid, village, township, county = w.units_up(grid_pos, 4)
    chief_pos = w.position_in("river_chief", village)
    chief = w.holder(chief_pos)
    for i, accept_after in enumerate((60, 120, 600)):
        r, _ = await w.reports.file(worker, grid_pos, Filing(f"s{i}", "river_litter", "垃圾", 28.9, 118.8))
        w.clock.advance(accept_after)
        t = await w.tasks.act(chief, chief_pos, r["task_id"], Action.ACCEPT, 1)
        if i < 2:
            t = await w.tasks.act(chief, chief_pos, t.id, Action.RESOLVE, t.version)
            t = await w.tasks.act(worker, grid_pos, t.id, Action.VERIFY, t.version)
            await w.tasks.act(worker, grid_pos, t.id, Action.CLOSE, t.version)
    async with w.db.read() as conn:
        at_county = await unit_stats(conn, w.index, county)
        at_grid = await unit_stats(conn, w.index, grid, category="river_litter")
    for s in (at_county, at_grid):
        assert s["total"]["tasks"] == 3 and s["total"]["closed"] == 2
        assert s["total"]["accept"] == {"n": 3, "p50_s": 120.0, "p90_s": 600.0}
        assert s["total"]["close"]["n"] == 2
    child = next(c for c in at_county["by_child"] if c["unit"]["id"] == w.index.unit_id(township))
    assert child["tasks"] == 3
    assert list(at_county["by_category"]) == ["river_litter"]


async def test_to_position_beside_another_action_is_refused_and_changes_nothing(tw: TaskWorld) -> None:
    """``to_position`` is reassign's field; beside a comment or an accept it was silently dropped (found by
    the trust audit: a comment naming a position of another county answered 200), so a client that meant
    to reassign, or got the action wrong, never learned its change did not happen."""
    w = tw
    worker, grid_pos, village, tid = await _reported(w, "tp1")
    chief_pos = w.position_in("river_chief", village)
    director = w.position_in("village_director", village)
    for who, pos, action in ((worker, grid_pos, Action.COMMENT), (w.holder(chief_pos), chief_pos, Action.ACCEPT)):
        with pytest.raises(BadRequest) as exc:
            await w.tasks.act(who, pos, tid, action, 1, comment="转给主任", to_position=director)
        assert exc.value.data == {"field": "to_position"}
    full = await w.tasks.get(worker, tid)
    assert (full["version"], full["state"], len(full["history"])) == (1, "created", 1)
