"""Migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from kernel.db.database import unpooled_engine
from tests.conftest import temp_pg_database
from tests.services import pg_url
from zzd.migrate import alembic_config, upgrade
from zzd.tables import all_metadata

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations" / "versions"


def _diff(url: str) -> list[object]:
    async def go() -> list[object]:
        eng = unpooled_engine(url)
        try:
            async with eng.connect() as conn:

                def cmp(sync_conn: Connection) -> list[object]:
                    ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                    return list(compare_metadata(ctx, all_metadata()))

                return await conn.run_sync(cmp)
        finally:
            await eng.dispose()

    return asyncio.run(go())


def test_sqlite_upgrade_from_empty_matches_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert _diff(url) == []
    upgrade(url)  # idempotent: a second run changes nothing


@pytest.mark.postgres
def test_postgres_upgrade_from_empty_matches_models() -> None:
    with temp_pg_database("zzd_mig") as name:
        assert _diff(pg_url(name)) == []


def test_revisions_form_one_line_and_import_no_application_code() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert len(script.get_heads()) == 1, "migrations must form a single line (no branches)"
    for path in MIGRATIONS.glob("*.py"):
        text = path.read_text()
        for pkg in ("zzd", "org_tree", "messaging", "apps"):
            assert f"import {pkg}" not in text and f"from {pkg}" not in text, f"{path.name} imports {pkg}"


def test_0016_ends_assignments_left_open_on_removed_positions(own_db_url: str, tmp_path: Path) -> None:
    """A unit's retirement used to leave its holders seated on the removed positions (found by the admin audit)."""
    from datetime import UTC, datetime

    from sqlalchemy import insert, select, update

    from kernel.db.database import Database
    from kernel.schema import persons
    from org_tree.importer import import_divisions
    from org_tree.org_schema import assignments, positions
    from tests.notices.conftest import write_divisions
    from zzd.migrate import alembic_config

    removed_at = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    start = datetime(2026, 11, 1, tzinfo=UTC)

    async def seat_and_break() -> tuple[int, int]:
        async with Database(own_db_url) as db:
            await import_divisions(db, write_divisions(tmp_path / "div", townships=1, villages=1))
            async with db.write() as conn:
                first, second = (await conn.execute(select(positions.c.id).order_by(positions.c.id).limit(2))).all()
                person = insert(persons).values(login="m16", name="某", disabled=False, created_at=start)
                pid = (await conn.execute(person.returning(persons.c.id))).scalar_one()
                for (pos,) in (first, second):
                    await conn.execute(insert(assignments).values(person_id=pid, position_id=pos, kind="primary",
                                                                  start_at=start))  # fmt: skip
                await conn.execute(update(positions).where(positions.c.id == first[0]).values(removed_at=removed_at))
            return int(first[0]), int(second[0])

    async def ends() -> dict[int, datetime | None]:
        async with Database(own_db_url) as db, db.read() as conn:
            rows = await conn.execute(select(assignments.c.position_id, assignments.c.end_at))
            return {int(p): e for p, e in rows}

    removed, live = asyncio.run(seat_and_break())
    command.downgrade(alembic_config(own_db_url), "0015_message_system")
    upgrade(own_db_url)
    after = asyncio.run(ends())
    assert after[live] is None
    end = after[removed]
    assert end is not None and end.replace(tzinfo=UTC) == removed_at


def test_0017_marks_the_units_an_administrator_retired_from_the_audit_log(own_db_url: str, tmp_path: Path) -> None:
    """Units retired (or merged away) through the API before ``units.retired_by`` existed are found by their
    audit entry, so the next re-import keeps them retired too; one the system retired is not marked."""
    from sqlalchemy import select

    from kernel.db.database import Database
    from org_tree.importer import import_divisions
    from org_tree.jurisdiction import SYSTEM
    from org_tree.org_schema import units
    from tests.client import new_person
    from tests.conftest import make_settings
    from tests.notices.conftest import write_divisions
    from zzd.services import Services

    async def retire() -> tuple[int, dict[str, int | None]]:
        s = Services.build(make_settings(own_db_url))
        try:
            folder = write_divisions(tmp_path / "div", townships=2, villages=2)
            await import_divisions(s.db, folder, grids_per_village=1)
            await s.org_index.load()
            admin, _ = await new_person(s, "管理员")
            await s.grants.grant(SYSTEM, admin, None, frozenset({"org"}))
            actor = await s.org.actor(admin)
            await s.org.structure.retire_unit(actor, "990101001001")  # a village and its grid
            await s.org.structure.merge_units(actor, "990101002001", "990101002002")
            await s.org.structure.retire_unit(SYSTEM, "990101001002")  # as a re-import that drops it does
            return admin, await marks()
        finally:
            await s.db.dispose()

    async def marks() -> dict[str, int | None]:
        async with Database(own_db_url) as db, db.read() as conn:
            rows = await conn.execute(select(units.c.code, units.c.retired_by).where(units.c.dissolved_at.isnot(None)))
            return {str(c): (int(b) if b is not None else None) for c, b in rows}

    admin, before = asyncio.run(retire())
    assert before == {
        "990101001001": admin, "990101001001001": admin, "990101002001": admin,
        "990101001002": None, "990101001002001": None,
    }  # fmt: skip
    command.downgrade(alembic_config(own_db_url), "0016_end_retired_holders")
    upgrade(own_db_url)
    assert asyncio.run(marks()) == before


def test_0021_keeps_the_sessions_signed_in_before_without_a_label(own_db_url: str) -> None:
    """``auth_sessions.client_label`` is added to sessions that exist (null: they said nothing then) and
    dropped again on the way down, the sessions themselves untouched either way."""
    from datetime import timedelta

    from sqlalchemy import insert, select

    from kernel.clock import SystemClock
    from kernel.db.database import Database
    from kernel.schema import auth_sessions, persons
    from kernel.sessions import SessionStore
    from zzd.migrate import alembic_config

    async def sign_in() -> tuple[int, str]:
        async with Database(own_db_url) as db:
            async with db.write() as conn:
                person = insert(persons).values(login="m21", name="某", disabled=False, created_at=SystemClock().now())
                pid = int((await conn.execute(person.returning(persons.c.id))).scalar_one())
            store = SessionStore(db, SystemClock(), refresh_ttl=timedelta(days=1))
            return pid, (await store.open(pid, client_label="旧手机")).session_id

    async def ids() -> list[str]:  # the one column every revision has
        async with Database(own_db_url) as db, db.read() as conn:
            return [str(r[0]) for r in await conn.execute(select(auth_sessions.c.id))]

    async def listed(pid: int) -> list[tuple[str, str | None]]:
        async with Database(own_db_url) as db:
            store = SessionStore(db, SystemClock(), refresh_ttl=timedelta(days=1))
            return [(x.session_id, x.client_label) for x in await store.active_sessions(pid)]

    pid, sid = asyncio.run(sign_in())
    assert asyncio.run(listed(pid)) == [(sid, "旧手机")]
    command.downgrade(alembic_config(own_db_url), "0020_audit_actor_units")
    assert _diff(own_db_url)  # the column is gone: the models (at head) differ
    assert asyncio.run(ids()) == [sid]
    upgrade(own_db_url)
    assert _diff(own_db_url) == []
    assert asyncio.run(listed(pid)) == [(sid, None)]  # still signed in, with no label from before


def test_0023_leaves_the_tasks_made_before_without_a_due_at(own_db_url: str) -> None:
    """``tasks.due_at`` (截止时间) is new: a task stored before 0023 reads back with none (its deadlines stay
    its category's), on the way down the column goes and the task with it stays."""
    from datetime import UTC, datetime

    from sqlalchemy import select, text

    from kernel.db.database import Database
    from messaging.tasks.model import TaskRow
    from messaging.tasks.schema import tasks

    at = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    row = {
        "category": "general", "title": "巡河", "body": "", "state": "created", "version": 1, "owner_position_id": 1,
        "owner_unit_id": 1, "pool": "[]", "origin_unit_id": 1, "creator_person_id": 1, "creator_position_id": 2,
        "watchers": "[]", "source": "direct", "client_msg_id": "m23", "escalation_level": 0, "accept_due_at": at,
        "created_at": at, "updated_at": at,
    }  # fmt: skip

    async def store_before() -> None:  # as a server of 0022 wrote it: no due_at column to name
        async with Database(own_db_url) as db, db.write() as conn:
            cols = ", ".join(row)
            await conn.execute(text(f"INSERT INTO tasks ({cols}) VALUES ({', '.join(':' + c for c in row)})"), row)  # noqa: S608

    async def read() -> TaskRow:
        async with Database(own_db_url) as db, db.read() as conn:
            return TaskRow.from_row((await conn.execute(select(tasks))).one())

    command.downgrade(alembic_config(own_db_url), "0022_receipt_reminded_at")
    assert any("due_at" in repr(d) for d in _diff(own_db_url))  # the column is gone: the models differ
    asyncio.run(store_before())
    upgrade(own_db_url)
    assert _diff(own_db_url) == []
    t = asyncio.run(read())
    assert (t.title, t.due_at, t.accept_due_at) == ("巡河", None, at)
    assert t.summary()["due_at"] is None


def test_a_downgrade_that_rebuilds_a_table_keeps_the_rows_pointing_at_it(own_db_url: str) -> None:
    """Downgrading past 0018 rebuilds ``notices`` on SQLite (batch mode: copy, drop, rename); the
    receipts pointing at a notice survive it, and the upgrade back to head finds them as they were.
    With foreign keys on during the migration, the drop cascaded and deleted every receipt."""
    from sqlalchemy import func, insert, select

    from kernel.clock import SystemClock
    from kernel.db.database import Database
    from kernel.schema import persons
    from messaging.notices.schema import notice_receipts, notices
    from zzd.migrate import alembic_config

    async def send() -> None:
        now = SystemClock().now()
        async with Database(own_db_url) as db, db.write() as conn:
            person = insert(persons).values(login="m18", name="某", disabled=False, created_at=now)
            pid = int((await conn.execute(person.returning(persons.c.id))).scalar_one())
            notice = insert(notices).values(
                sender_person_id=pid,
                sender_position_id=1,
                client_msg_id="m18",
                title="通知",
                body="正文",
                attachments="[]",
                selector="{}",
                priority="normal",
                ack_required=False,
                created_at=now,
                audience_positions=1,
                audience_persons=1,
                receipt_count=1,
                org_version=1,
            )
            nid = int((await conn.execute(notice.returning(notices.c.id))).scalar_one())
            await conn.execute(
                insert(notice_receipts).values(
                    notice_id=nid, person_id=pid, position_id=1, via_position_id=1, reason="holder", unit_id=1
                )
            )

    async def counts() -> tuple[int, int]:  # tables and columns every revision since 0007 has
        async with Database(own_db_url) as db, db.read() as conn:
            sent = int((await conn.execute(select(func.count()).select_from(notices))).scalar_one())
            receipts = int((await conn.execute(select(func.count(notice_receipts.c.id)))).scalar_one())
            return sent, receipts

    asyncio.run(send())
    assert asyncio.run(counts()) == (1, 1)
    command.downgrade(alembic_config(own_db_url), "0017_units_retired_by")
    assert asyncio.run(counts()) == (1, 1)
    upgrade(own_db_url)
    assert _diff(own_db_url) == []
    assert asyncio.run(counts()) == (1, 1)
