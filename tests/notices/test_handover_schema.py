"""Handover moves unread receipts to the new holder with history; the migration matches the tables."""

from __future__ import annotations

import json
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, select

import messaging.notices.schema  # noqa: F401
from kernel.db.base import metadata
from kernel.db.database import unpooled_engine
from messaging.notices import validate_compose
from messaging.schema import person_events
from org_tree.holder import OrgIndexHolder
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from org_tree.resolution import resolve
from org_tree.selectors import parse_selector
from tests.notices.conftest import CITY, World
from zzd.migrate import upgrade


async def test_transfer_unread_keeps_history(world: World) -> None:
    w = world
    person, position = w.governor()
    sel = f"village_secretary@{CITY}/**"
    c1 = validate_compose(client_msg_id="h1", title="t1", body="b", selector=sel)
    c2 = validate_compose(client_msg_id="h2", title="t2", body="b", selector=sel)
    n1 = await w.send(person, position, c1)
    n2 = await w.send(person, position, c2)
    audience = resolve(w.index, parse_selector(sel))
    i = audience.reasons.index("holder")
    old, pos = audience.person_ids[i], audience.position_ids[i]
    await w.svc.mark_read(old, n1.notice_id)  # read: stays with the old holder
    newcomer = person  # any existing person; the governor takes over a village post here

    holder = OrgIndexHolder(w.db, w.index)
    org = OrgService(w.db, w.clock, holder)
    await org.handover(SYSTEM, pos, newcomer)
    w.index = holder.index
    assert await w.svc.transfer_unread(pos, old, newcomer) == 1
    assert await w.svc.transfer_unread(pos, old, newcomer) == 0  # idempotent

    hist1 = await w.svc.receipt_history(person, n1.notice_id, pos)
    hist2 = await w.svc.receipt_history(person, n2.notice_id, pos)
    assert [(h["person_id"], h["previous_person_id"]) for h in hist1] == [(old, None)]
    assert [(h["person_id"], h["previous_person_id"]) for h in hist2] == [(newcomer, old)]
    assert hist2[0]["transferred_at"] is not None
    states = await w.svc.acknowledge(newcomer, n2.notice_id, position_id=pos)
    assert states[0].acked_at is not None
    async with w.db.read() as conn:
        rows = await conn.execute(
            select(person_events.c.kind, person_events.c.payload).where(person_events.c.person_id.in_([old, newcomer]))
        )
        kinds = [(k, json.loads(p)) for k, p in rows]
    assert any(k == "notice.new" and p.get("transferred") and p["notice_id"] == n2.notice_id for k, p in kinds)
    assert any(k == "notice.transferred" and p["notice_id"] == n2.notice_id for k, p in kinds)


async def test_migration_matches_tables(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    import asyncio

    await asyncio.to_thread(upgrade, url)
    eng = unpooled_engine(url)
    try:
        async with eng.connect() as conn:

            def cmp(sync_conn: Connection) -> list[object]:
                ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return list(compare_metadata(ctx, metadata))

            diff = await conn.run_sync(cmp)
    finally:
        await eng.dispose()
    mine = [d for d in diff if "notice" in repr(d)]
    assert mine == []


async def test_bulk_receipts_roll_back_with_the_transaction(world: World) -> None:
    """COPY (PostgreSQL) / executemany (SQLite) run inside the caller's transaction."""
    from sqlalchemy import func

    from messaging.notices.schema import notice_receipts, notices
    from org_tree.bulk import bulk_insert

    w = world
    person, position = w.governor()

    class Boom(Exception):
        pass

    try:
        async with w.db.write() as conn:
            res = await conn.execute(
                notices.insert()
                .values(
                    sender_person_id=person,
                    sender_position_id=position,
                    client_msg_id="rb",
                    title="t",
                    body="",
                    attachments="[]",
                    selector="{}",
                    priority="normal",
                    ack_required=False,
                    created_at=w.clock.now(),
                    audience_positions=0,
                    audience_persons=0,
                    receipt_count=0,
                    org_version=0,
                )
                .returning(notices.c.id)
            )
            nid = int(res.scalar_one())
            cols = ("notice_id", "person_id", "position_id", "via_position_id", "reason", "unit_id")
            await bulk_insert(conn, notice_receipts, cols, [(nid, i, i, i, "holder", 1) for i in range(1, 1001)])
            inside = (await conn.execute(select(func.count()).select_from(notice_receipts))).scalar_one()
            assert inside == 1000
            raise Boom
    except Boom:
        pass
    async with w.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(notice_receipts))).scalar_one() == 0
        assert (await conn.execute(select(func.count()).select_from(notices))).scalar_one() == 0
