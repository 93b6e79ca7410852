"""Fixtures of the conversation tests: a small tree with people, built once per backend, cloned per test.

The tree is the org tests' mini division set (1 province, 2 cities, 3
counties, 6 townships, 12 villages, 2 grids each) with synthetic holders for
every position (pools of 2, no vacancies). PostgreSQL databases are cloned
with ``CREATE DATABASE … TEMPLATE``, SQLite files are copied.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kernel.clock import FakeClock
from kernel.db.database import Database
from messaging.conversations.groups import GroupService
from messaging.conversations.members import MemberReconciler
from messaging.conversations.model import ConversationConfig
from messaging.conversations.service import ConversationService
from messaging.events import EventLog
from messaging.unit_of_work import UnitOfWork
from messaging.wakeup import EventGroup
from org_tree.holder import OrgIndexHolder
from org_tree.importer import import_divisions
from org_tree.jurisdiction import SYSTEM, Actor
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from org_tree.synthetic import generate_people
from tests.org.conftest import write_mini_divisions
from tests.tree_templates import tree_fixtures

ADMIN = SYSTEM


async def populate(url: str, folder: Path) -> None:
    db = Database(url)
    try:
        clock = FakeClock()
        await import_divisions(db, folder, grids_per_village=2, clock=clock)
        await generate_people(db, pool_size=2, seed=11, vacancy_rate=0.0, deputy_rate=0.0, clock=clock)
    finally:
        await db.dispose()


conv_sqlite_template, conv_pg_template, conv_url = tree_fixtures("conv", "conv_url", populate, write_mini_divisions)


@dataclass
class World:
    """One process's view: database, org index and service, clock, captured wake-ups, the services."""

    db: Database
    clock: FakeClock
    holder: OrgIndexHolder
    org: OrgService
    events: EventLog
    conv: ConversationService
    groups: GroupService
    members: MemberReconciler
    people: PersonDirectory
    notified: list[list[EventGroup]] = field(default_factory=list)

    def holders(self, position_id: int) -> tuple[int, ...]:
        idx = self.holder.index
        return idx.primary_holders(idx.slot(position_id))

    def single_positions(self, n: int) -> list[int]:
        """``n`` held positions of non-pool roles (one primary holder each), distinct holders."""
        idx = self.holder.index
        out: list[int] = []
        seen: set[int] = set()
        for k in idx.slots():
            role = idx.position_role(k)
            hs = idx.primary_holders(k)
            if role.pool or len(hs) != 1 or hs[0] in seen:
                continue
            seen.add(hs[0])
            out.append(idx.position_id(k))
            if len(out) == n:
                break
        assert len(out) == n
        return out

    def pool_position(self) -> int:
        idx = self.holder.index
        for k in idx.slots():
            if idx.position_role(k).pool and len(idx.primary_holders(k)) >= 2:
                return idx.position_id(k)
        raise AssertionError("no pool position with two holders")

    async def person(self, name: str = "新人") -> int:
        return (await self.people.create(name)).id

    async def handover(self, position_id: int, to_person: int, actor: Actor = ADMIN) -> None:
        """Hand over as ``actor`` (default: the operator); the clock moves a second either side."""
        self.clock.advance(1)
        try:
            await self.org.handover(actor, position_id, to_person)
        finally:
            self.clock.advance(1)

    async def stream(self, person_id: int) -> list[tuple[str, dict[str, Any]]]:
        import json

        page = await self.events.read(person_id, epoch=None, since=0)
        return [(k, json.loads(p)) for _, k, p in page.events]


async def make_world(url: str, config: ConversationConfig | None = None) -> World:
    db = Database(url)
    clock = FakeClock()
    holder = OrgIndexHolder(db)
    await holder.load()
    events = EventLog(db)
    notified: list[list[EventGroup]] = []
    conv = ConversationService(UnitOfWork(db, events, clock, notified.append), config)
    return World(
        db,
        clock,
        holder,
        OrgService(db, clock, holder),
        events,
        conv,
        GroupService(conv),
        MemberReconciler(conv, lambda: holder.index),
        PersonDirectory(db, clock),
        notified,
    )


@pytest.fixture
async def world(conv_url: str) -> AsyncIterator[World]:
    w = await make_world(conv_url)
    async with w.db:  # disposed after the test
        yield w
