"""Deadline escalation survives ``kill -9`` of the process holding the claim (issue 6, reliability).

Two real ``zzd serve`` processes on PostgreSQL + Redis. Every task's accept
deadline passes; the test holds the task rows locked so both processes are
caught mid-escalation *holding claims*: a process claims timers by locking
their rows in its escalation transaction, then waits for the task rows. The
test reads which timers the first process holds (``pgrowlocks``), kills it
with SIGKILL, then lets go. PostgreSQL rolls the dead transaction back and
the survivor escalates those very timers. Afterwards each task has exactly
one escalation, and every involved person's stream carries each task event
exactly once, gap-free (history checker, after dedupe by seq).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]
import pytest
from sqlalchemy import func, select

from kernel.clock import SystemClock
from kernel.db.database import Database
from messaging.schema import person_events
from messaging.tasks.categories import load_catalog, put_category, seed_categories, validate_category
from messaging.tasks.schema import task_events, task_timers, tasks
from org_tree.importer import import_divisions
from org_tree.index import OrgIndex
from tests.client import Client
from tests.conftest import temp_pg_database
from tests.history import History
from tests.notices.conftest import write_divisions
from tests.procs import zzd_processes
from tests.services import PG_HOST, PG_PORT, PG_USER, REDIS_URL, pg_url
from tests.test_notice_node_kill_s8 import _mint
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

REPORTS = 12


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    with temp_pg_database("zzd_esc") as name:
        yield name


async def _prepare(url: str, tmp: Path) -> tuple[int, int, int, int, int]:
    """Tree and people; a fast river_litter rule. Returns worker, grid position, old and new chief, new position."""
    from org_tree.synthetic import generate_people

    db = Database(url)
    try:
        await import_divisions(db, write_divisions(tmp / "div", townships=2, villages=3), grids_per_village=2)
        await generate_people(db, seed=5, vacancy_rate=0.0)
        idx = await OrgIndex.load(db)
        now = SystemClock().now()
        rule = next(c for c in load_catalog() if c.key == "river_litter").to_dict()
        fast = validate_category({**rule, "accept_within": 3, "max_escalations": 1, "ding": False})
        async with db.write() as conn:
            await seed_categories(conn, load_catalog(), now)
            await put_category(conn, fast, now)
        worker_role, chief_role = idx.role_id("grid_worker"), idx.role_id("river_chief")
        grid_k = next(k for k in idx.slots() if idx.position_role_id(k) == worker_role)
        grid_u = idx.position_unit(grid_k)
        village, township = idx.parent(grid_u), idx.parent(idx.parent(grid_u))

        def chief_in(u: int) -> int:
            return next(int(k) for k in idx.unit_slots(u) if idx.position_role_id(k) == chief_role)

        old_k, new_k = chief_in(village), chief_in(township)
        return (
            idx.primary_holders(grid_k)[0], int(idx.position_id(grid_k)), idx.primary_holders(old_k)[0],
            idx.primary_holders(new_k)[0], int(idx.position_id(new_k)),
        )  # fmt: skip
    finally:
        await db.dispose()


def _node_id(log: list[str]) -> str:
    for line in log:
        m = re.search(r"zzd node (\S+) ready", line)
        if m:
            return m.group(1)
    raise AssertionError("node id not logged:\n" + "\n".join(log[-20:]))


async def _count(db: Database, query: Any) -> int:
    async with db.read() as conn:
        return int((await conn.execute(query)).scalar_one())


async def _at_least(db: Database, query: Any, want: int) -> bool:
    return await _count(db, query) >= want


async def _none_left(db: Database, query: Any) -> bool:
    return await _count(db, query) == 0


async def _timers_held(conn: asyncpg.Connection, pid: int, timeout: float) -> list[int]:
    """Ids of the timer rows locked by process ``pid``'s escalation, once it waits for a lock (the tasks').

    Its backends are found by the client ports of its connections to PostgreSQL.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ports = [
            c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.raddr and c.raddr.port == PG_PORT
        ]
        backends = [
            int(r[0])
            for r in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND client_port = ANY($1::int[])"
                " AND wait_event_type = 'Lock'",
                ports,
            )
        ]
        if backends:
            rows = await conn.fetch(
                "SELECT t.id FROM task_timers t JOIN pgrowlocks('task_timers') l ON t.ctid = l.locked_row"
                " WHERE l.pids && $1::int[] ORDER BY t.id",
                backends,
            )
            if rows:
                return [int(r[0]) for r in rows]
        if loop.time() > deadline:
            seen = await conn.fetch(
                "SELECT pid, client_port, state, wait_event_type, left(query, 120) AS q FROM pg_stat_activity"
                " WHERE datname = current_database()"
            )
            raise AssertionError(f"process A never waited mid-escalation holding timers; its ports {ports}: {seen}")
        await asyncio.sleep(0.05)


async def test_kill_9_mid_escalation_survivor_takes_over_exactly_once(fresh_pg: str, tmp_path: Path) -> None:
    url = pg_url(fresh_pg)
    worker, grid_pos, old_chief, new_chief, new_pos = await _prepare(url, tmp_path)
    people = [worker, old_chief, new_chief]
    db = Database(url)
    locker: asyncpg.Connection | None = None
    try:
        async with zzd_processes(
            url,
            REDIS_URL,
            2,
            ZZD_TASK_TIMER_LEASE="2",
            ZZD_BACKGROUND_INTERVAL="0.1",
            ZZD_TASK_TIMER_BATCH="4",
        ) as (a, b):
            node_a = _node_id(a.log)
            toks = await _mint(db, people)
            clients = {p: await Client.connect(b.ws, toks[p]) for p in people}
            hdr = {"Authorization": f"Bearer {toks[worker]}"}
            async with httpx.AsyncClient(base_url=b.http, timeout=30) as h:
                for i in range(REPORTS):
                    body = {"as_position": grid_pos, "client_msg_id": f"k{i}", "category": "river_litter",
                            "text": f"垃圾{i}", "location": {"lat": 28.9, "lon": 118.8}}  # fmt: skip
                    r = await h.post("/api/v1/reports", json=body, headers=hdr)
                    assert r.status_code == 201, r.text
            # Hold every task row: escalations block after claiming their timers.
            locker = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=fresh_pg)
            await locker.execute("CREATE EXTENSION IF NOT EXISTS pgrowlocks")
            tr = locker.transaction()
            await tr.start()
            await locker.execute("SELECT id FROM tasks FOR UPDATE")
            held_by_a = await _timers_held(locker, a.proc.pid, timeout=20)
            a.proc.kill()  # SIGKILL while it holds claims
            await a.proc.wait()
            await tr.rollback()
            await locker.close()
            locker = None
            escalations = select(func.count()).select_from(task_events).where(task_events.c.action == "escalate")
            await wait_until(lambda: _at_least(db, escalations, REPORTS), 30, "every task to escalate")
            for p, c in clients.items():  # created + escalated per task; the new owner joins at escalation
                await c.wait_events(REPORTS if p == new_chief else REPORTS * 2, timeout=15)
            # a second look: nothing more arrives, nothing escalates twice
            open_timers = select(func.count()).select_from(task_timers).where(task_timers.c.done_at.is_(None))
            await wait_until(lambda: _none_left(db, open_timers), 15, "the level-1 timers to finish at the top")

        async with db.read() as conn:
            per_task = Counter(
                int(t)
                for (t,) in await conn.execute(select(task_events.c.task_id).where(task_events.c.action == "escalate"))
            )
            owners = {int(o) for (o,) in await conn.execute(select(tasks.c.owner_position_id))}
            taken_over = {
                int(i): str(c)
                for i, c in await conn.execute(
                    select(task_timers.c.id, task_timers.c.claimed_by).where(task_timers.c.id.in_(held_by_a))
                )
            }
            stored = [
                (int(p), r.kind, json.loads(r.payload))
                for p, r in (
                    (row.person_id, row)
                    for row in await conn.execute(select(person_events).where(person_events.c.person_id.in_(people)))
                )
            ]
        assert len(per_task) == REPORTS and set(per_task.values()) == {1}
        assert owners == {new_pos}
        # The killed process's claims were rolled back; the survivor escalated those timers.
        assert set(taken_over) == set(held_by_a)
        assert all(not c.startswith(f"{node_a}:") for c in taken_over.values()), taken_over
        # Stored streams: each (person, task, version) exactly once.
        keys = Counter((p, d["task"]["task_id"], d["task"]["version"]) for p, k, d in stored if k.startswith("task."))
        assert set(keys.values()) == {1}
        assert {k for k in keys if k[2] == 2} == {(p, t, 2) for p in people for t in per_task}
        # Live deliveries after dedupe by seq: gap-free, each task event once.
        hist = History()
        for p, c in clients.items():
            hist.deliver_events(p, c.events)
            by_seq = {e["seq"]: e for e in c.events if e["kind"].startswith("task.")}
            seen = Counter((e["data"]["task"]["task_id"], e["data"]["task"]["version"]) for e in by_seq.values())
            assert set(seen.values()) == {1}
            assert {t for t, v in seen if v == 2} == set(per_task)
            await c.close()
        hist.check()
    finally:
        if locker is not None:
            await locker.close()
        await db.dispose()
