"""Fixtures of the notice tests: a synthetic tree with people, built once per backend, cloned per test.

The tree: 1 province, 1 city, 2 counties × 5 townships × 15 villages × 3 grids
(the shipped role catalog, synthetic people with vacancies, deputies and grid
workers who also hold their village's 河长/妇联 position). PostgreSQL databases
are cloned with ``CREATE DATABASE … TEMPLATE`` (migrated with ``zzd.migrate.upgrade``),
SQLite files are copied, so each test starts from the same data in well under a second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from kernel.clock import FakeClock
from kernel.db.database import Database
from kernel.jobs import Jobs, Spawn
from messaging.broker.memory import MemoryBroker
from messaging.events import EventLog
from messaging.notices import LoggingNotifier, NoticeConfig, NoticeService, SendResult
from messaging.notices.coordinator import NoticeFanout
from messaging.notices.relay import FanoutRelay
from messaging.notices.schema import notice_receipts  # (importing it registers the notice tables)
from messaging.ports import Notify
from messaging.unit_of_work import UnitOfWork
from messaging.wakeup import EventGroup
from org_tree.importer import import_divisions
from org_tree.index import OrgIndex
from org_tree.synthetic import generate_people
from tests.tree_templates import tree_fixtures

CITY = "9901"
#: The counties of the test city, by code (iterating gives the codes, in this order).
COUNTIES = {"990101": "柯城区", "990102": "衢江区"}


def write_divisions(folder: Path, townships: int = 5, villages: int = 15, counties: Collection[str] = COUNTIES) -> Path:
    """One province, one city and ``counties`` (of ``COUNTIES``), each of ``townships`` × ``villages``.

    The import adds the grids. bench/group_fanout.py builds its one-county tree with it too.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "provinces.csv").write_text('code,name\n99,"测试省"\n', encoding="utf-8")
    (folder / "cities.csv").write_text(f'code,name,provinceCode\n{CITY},"甲市",99\n', encoding="utf-8")
    areas = ["code,name,cityCode,provinceCode", *(f'{area},"{COUNTIES[area]}",{CITY},99' for area in counties)]
    (folder / "areas.csv").write_text("\n".join(areas) + "\n", encoding="utf-8")
    streets = ["code,name,areaCode,provinceCode,cityCode"]
    vills = ["code,name,streetCode,provinceCode,cityCode,areaCode"]
    for area in counties:
        for t in range(1, townships + 1):
            street = f"{area}{t:03d}"
            streets.append(f'{street},"{area[-2:]}镇{t}",{area},99,{CITY}')
            for v in range(1, villages + 1):
                vills.append(f'{street}{v:03d},"{street[-3:]}村{v}",{street},99,{CITY},{area}')
    (folder / "streets.csv").write_text("\n".join(streets) + "\n", encoding="utf-8")
    (folder / "villages.csv").write_text("\n".join(vills) + "\n", encoding="utf-8")
    return folder


async def _populate(url: str, folder: Path) -> None:
    db = Database(url)
    try:
        await import_divisions(db, folder, grids_per_village=3)
        await generate_people(db, seed=7, vacancy_rate=0.02, deputy_rate=0.05, multi_share=0.5, pool_size=3)
    finally:
        await db.dispose()


notices_sqlite_template, notices_pg_template, tree_url = tree_fixtures(
    "notices", "tree_url", _populate, write_divisions
)


@dataclass
class Sockets:
    """The test double of ``messaging.ports.LocalDelivery``: who is connected to this test "process"."""

    connected: list[int] = field(default_factory=list)
    caught_up: list[int] = field(default_factory=list)
    delivered: list[list[EventGroup]] = field(default_factory=list)

    def person_ids(self) -> list[int]:
        return list(self.connected)

    def deliver(self, groups: list[EventGroup]) -> None:
        self.delivered.append(groups)

    async def catch_up(self, person_ids: Sequence[int]) -> None:
        self.caught_up.extend(person_ids)


def notice_service(
    db: Database,
    events: EventLog,
    clock: FakeClock,
    notify: Notify,
    index: OrgIndex,
    notifier: LoggingNotifier,
    jobs: Spawn,
    *,
    config: NoticeConfig | None = None,
    node_id: str = "local",
) -> NoticeService:
    """The notice service wired as ``zzd/services.py`` wires it, with no sockets and the in-process broker."""
    uow = UnitOfWork(db, events, clock, notify)
    relay = FanoutRelay(uow, lambda: index, node_id=node_id)
    fanout = NoticeFanout(relay, Sockets(), MemoryBroker(), jobs, node_id=node_id)
    return NoticeService(uow, lambda: index, notifier, fanout, config=config)


@dataclass
class World:
    """One process's view: database, index, clock, captured wake-ups, background jobs, the service."""

    db: Database
    index: OrgIndex
    clock: FakeClock
    events: EventLog
    notifier: LoggingNotifier
    svc: NoticeService
    jobs: Jobs
    notified: list[list[EventGroup]] = field(default_factory=list)

    @property
    def relay(self) -> FanoutRelay:
        return self.svc.fanout.relay

    async def send(self, person: int, position: int, compose: Any) -> SendResult:
        """Send as the server does, then wait for the fan-out the send started (no sockets here)."""
        res = await self.svc.send(person, position, compose)
        await self.jobs.idle()
        return res

    async def receipts(self, notice_id: int) -> list[tuple[int, int]]:
        """The notice's receipt rows as stored: ``(person id, position id)``, one per addressed holding."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(notice_receipts.c.person_id, notice_receipts.c.position_id).where(
                    notice_receipts.c.notice_id == notice_id
                )
            )
            return [(int(a), int(b)) for a, b in rows]

    async def close(self) -> None:
        await self.jobs.stop()
        await self.svc.close()
        await self.db.dispose()

    def governor(self) -> tuple[int, int]:
        """(person, position) of a held position that may address the whole tree."""
        return self.head_of(self.index.unit("99"))

    def head_of(self, u: int) -> tuple[int, int]:
        for k in self.index.unit_slots(u):
            role = self.index.position_role(k)
            holders = self.index.primary_holders(k)
            if role.jurisdiction == "subtree" and holders:
                return holders[0], self.index.position_id(k)
        raise AssertionError("no held subtree position in the unit")


async def make_world(
    url: str, clock: FakeClock | None = None, config: NoticeConfig | None = None, *, jobs: Jobs | None = None
) -> World:
    db = Database(url)
    index = await OrgIndex.load(db)
    clock = clock or FakeClock()
    events = EventLog(db)
    notified: list[list[EventGroup]] = []
    notifier = LoggingNotifier()
    jobs = jobs or Jobs()
    svc = notice_service(db, events, clock, notified.append, index, notifier, jobs, config=config)
    return World(db, index, clock, events, notifier, svc, jobs, notified)


@pytest.fixture
async def world(tree_url: str) -> AsyncIterator[World]:
    w = await make_world(tree_url)
    try:
        yield w
    finally:
        await w.close()
