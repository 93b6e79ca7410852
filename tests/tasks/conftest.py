"""Fixtures of the task tests: the notice tests' synthetic tree (cloned per test) and a task world."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

import messaging.tasks.schema  # noqa: F401  (registers the task tables)
from kernel.clock import FakeClock
from kernel.db.database import Database
from messaging.events import EventLog
from messaging.notices import LoggingNotifier
from messaging.tasks.reports import ReportService
from messaging.tasks.service import TaskService
from messaging.tasks.timers import TaskTimers
from messaging.unit_of_work import UnitOfWork
from messaging.wakeup import EventGroup
from org_tree.index import OrgIndex
from tests.notices.conftest import notices_pg_template, notices_sqlite_template, tree_url

__all__ = ["TaskWorld", "make_task_world", "notices_pg_template", "notices_sqlite_template", "tree_url"]


@dataclass
class TaskWorld:
    db: Database
    index: OrgIndex
    clock: FakeClock
    events: EventLog
    notifier: LoggingNotifier
    tasks: TaskService
    reports: ReportService
    timers: TaskTimers
    notified: list[list[EventGroup]] = field(default_factory=list)
    observed: list[tuple[str, str, float]] = field(default_factory=list)

    def held(self, role: str, *, under: int | None = None) -> list[tuple[int, int]]:
        """(person, position id) of every held position of ``role`` (in the subtree of unit ``under``)."""
        idx = self.index
        rid = idx.role_id(role)
        out = []
        for k in idx.slots():
            if idx.position_role_id(k) != rid:
                continue
            u = idx.position_unit(k)
            if under is not None and not idx.contains(under, u):
                continue
            holders = idx.primary_holders(k)
            if holders:
                out.append((holders[0], int(idx.position_id(k))))
        return out

    def unit_of(self, position_id: int) -> int:
        return self.index.position_unit(self.index.slot(position_id))

    def units_up(self, position_id: int, n: int) -> list[int]:
        """The position's unit and the ``n - 1`` units above it (a grid's: grid, village, township, …)."""
        units = [self.unit_of(position_id)]
        while len(units) < n:
            units.append(self.index.parent(units[-1]))
        return units

    def position_in(self, role: str, u: int) -> int:
        rid = self.index.role_id(role)
        for k in self.index.unit_slots(u):
            if self.index.position_role_id(k) == rid:
                return int(self.index.position_id(k))
        raise AssertionError(f"no {role} in unit {u}")

    def holder(self, position_id: int) -> int:
        return self.index.primary_holders(self.index.slot(position_id))[0]

    def grid_worker_with_held_chain(self) -> tuple[int, int]:
        """A grid worker whose village and township river chiefs are both held."""
        idx = self.index
        for person, pos in self.held("grid_worker"):
            _, village, township = self.units_up(pos, 3)
            try:
                vr = self.position_in("river_chief", village)
                tr = self.position_in("river_chief", township)
            except AssertionError:
                continue
            if idx.primary_holders(idx.slot(vr)) and idx.primary_holders(idx.slot(tr)):
                return person, pos
        raise AssertionError("no grid worker with a held river-chief chain")


async def make_task_world(url: str, clock: FakeClock | None = None, *, node_id: str = "n1") -> TaskWorld:
    db = Database(url)
    index = await OrgIndex.load(db)
    clock = clock or FakeClock()
    events = EventLog(db)
    notifier = LoggingNotifier()
    notified: list[list[EventGroup]] = []
    observed: list[tuple[str, str, float]] = []
    uow = UnitOfWork(db, events, clock, notified.append)
    svc = TaskService(uow, lambda: index, observe=lambda *a: observed.append(a))
    await svc.seed_categories()
    timers = TaskTimers(uow, notifier, lambda: index, node_id=node_id)
    return TaskWorld(db, index, clock, events, notifier, svc, ReportService(svc), timers, notified, observed)


@pytest.fixture
async def tw(tree_url: str) -> AsyncIterator[TaskWorld]:
    w = await make_task_world(tree_url)
    async with w.db:  # disposed after the test
        yield w
