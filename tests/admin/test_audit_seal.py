"""Issue 16: audited writes no longer queue on the chain's head; sealers chain the committed entries afterwards.

Real PostgreSQL and SQLite, real processes: two writer processes each run a
sealer and their entries end in one valid chain; a transaction that commits
after a later id, or rolls back, neither blocks sealing nor leaves a hole;
tampering is still caught; a sealer that found the head busy comes back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from kernel.audit import AuditEntry, Sealer, audit_head, audit_log, record, seal
from kernel.audit_verify import verify
from kernel.db.database import Database
from tests.conftest import AUDIT_KEY
from tests.waiting import scaled, wait_until

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 3, tzinfo=UTC)


async def _writer(url: str, count: int, tag: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.admin.audit_writer", url, str(count), tag,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _chain(db: Database) -> list[dict[str, object]]:
    async with db.read() as conn:
        rows = await conn.execute(select(audit_log).order_by(audit_log.c.seq))
        return [dict(r._mapping) for r in rows]


@pytest.mark.slow  # multi-process: two writer processes, each importing the app
async def test_two_processes_writing_at_once_seal_into_one_valid_chain(own_db_url: str) -> None:
    per = 150
    procs = [await _writer(own_db_url, per, tag) for tag in ("a", "b")]
    outs = [await asyncio.wait_for(p.communicate(), scaled(120)) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()
    by_children = sum(json.loads(out)["sealed"] for out, _ in outs)
    db = Database(own_db_url)
    try:
        rest = await seal(db, AUDIT_KEY, wait=True)
        assert by_children + (rest or 0) == 2 * per  # each entry sealed exactly once, by whichever sealer
        report = await verify(db, AUDIT_KEY)
        assert (report.ok, report.checked, report.first_seq, report.last_seq, report.unsealed) == (
            True, 2 * per, 1, 2 * per, 0,
        )  # fmt: skip
        chain = await _chain(db)
        assert [r["seq"] for r in chain] == list(range(1, 2 * per + 1))
        written = sorted((json.loads(str(r["detail"]))["w"], json.loads(str(r["detail"]))["i"]) for r in chain)
        assert written == sorted((w, i) for w in "ab" for i in range(per))
        # tampering with an entry sealed by either process is still caught, at its position
        victim = chain[per]
        async with db.write() as conn:
            await conn.execute(update(audit_log).where(audit_log.c.id == victim["id"]).values(outcome="denied"))
        report = await verify(db, AUDIT_KEY)
        assert (report.ok, report.bad_seq, report.bad_id) == (False, per + 1, victim["id"])
    finally:
        await db.dispose()


@asynccontextmanager
async def _sealing(url: str, poll: float) -> AsyncIterator[tuple[Database, Sealer]]:
    """A database with its sealer running; the sealer is cancelled and the database disposed however it ends."""
    async with Database(url) as db:
        sealer = Sealer(db, AUDIT_KEY, poll=poll)
        task = asyncio.create_task(sealer.run())
        try:
            yield db, sealer
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_rolled_back_entry_leaves_no_hole_and_the_sealer_wakes_after_commit(own_db_url: str) -> None:
    # poll=3600: only the after-commit bell can wake the sealer within the test
    async with _sealing(own_db_url, poll=3600) as (db, _):
        with pytest.raises(RuntimeError):
            async with db.write() as conn:
                await record(conn, AuditEntry("test.rolled_back"), NOW)
                raise RuntimeError("the change failed")
        async with db.write() as conn:
            kept = await record(conn, AuditEntry("test.kept"), NOW)
        report = await wait_until(lambda: _all_sealed(db), 10, "the committed entry sealed after its commit")
        assert (report.ok, report.checked, report.last_seq) == (True, 1, 1)
        chain = await _chain(db)
        assert [(r["id"], r["seq"], r["action"]) for r in chain] == [(kept, 1, "test.kept")]


async def _all_sealed(db: Database) -> object:
    report = await verify(db, AUDIT_KEY)
    return report if report.unsealed == 0 and report.checked else None


@pytest.mark.postgres
async def test_entries_commit_past_an_open_audited_transaction_and_seal_in_visibility_order(
    own_pg_database: str,
) -> None:
    """The head is no longer locked by writers: B commits and is sealed while A (a lower id) is still open."""
    db = Database(own_pg_database)
    try:
        async with db.write() as a:
            id_a = await record(a, AuditEntry("test.slow"), NOW)
            async with asyncio.timeout(scaled(5)):  # before issue 16 B waited here for A's head lock
                async with db.write() as b:
                    id_b = await record(b, AuditEntry("test.fast"), NOW)
                assert await seal(db, AUDIT_KEY) == 1
            with pytest.raises(RuntimeError):  # C takes an id after B and rolls back
                async with db.write() as c:
                    await record(c, AuditEntry("test.rolled_back"), NOW)
                    raise RuntimeError("the change failed")
            report = await verify(db, AUDIT_KEY)  # A's entry is not committed: invisible, not a hole
            assert (report.ok, report.last_seq, report.unsealed) == (True, 1, 0)
        assert await seal(db, AUDIT_KEY) == 1
        chain = await _chain(db)
        assert [(r["id"], r["seq"]) for r in chain] == [(id_b, 1), (id_a, 2)] and id_a < id_b
        assert (await verify(db, AUDIT_KEY)).ok
        # the hash covers the id where it differs from the position: swapping the two ids is caught
        async with db.write() as conn:
            await conn.execute(update(audit_log).where(audit_log.c.id == id_a).values(id=-1))
            await conn.execute(update(audit_log).where(audit_log.c.id == id_b).values(id=id_a))
            await conn.execute(update(audit_log).where(audit_log.c.id == -1).values(id=id_b))
        assert ((r := await verify(db, AUDIT_KEY)).ok, r.bad_seq) == (False, 1)
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_a_sealer_that_finds_the_head_busy_comes_back(own_pg_database: str) -> None:
    async with _sealing(own_pg_database, poll=3600) as (db, sealer), Database(own_pg_database, pool_size=1) as other:
        async with other.write() as held:  # another process's sealer, mid-pass
            await held.execute(select(audit_head).where(audit_head.c.id == 1).with_for_update())
            async with db.write() as conn:
                await record(conn, AuditEntry("test.waiting"), NOW)
            await wait_until(lambda: sealer.busy, 10, "the sealer found the head busy")
            assert (await verify(db, AUDIT_KEY)).unsealed == 1
        report = await wait_until(lambda: _all_sealed(db), 10, "sealed once the head was free")
        assert (report.ok, report.checked) == (True, 1)


async def test_verify_beside_a_running_sealer_reports_no_false_break(own_db_url: str) -> None:
    """The head moves while verify walks: it must catch up, not call the newer rows a cut tail or an append."""
    async with _sealing(own_db_url, poll=0.05) as (db, _):

        async def writes() -> None:
            for i in range(80):
                async with db.write() as conn:
                    await record(conn, AuditEntry("test.during_verify", detail={"i": i}), NOW)

        writing = asyncio.create_task(writes())
        problems: list[str | None] = []
        while not writing.done():
            problems.extend(r.problem for r in [await verify(db, AUDIT_KEY)] if not r.ok)
        await writing
        assert problems == []
        report = await wait_until(lambda: _all_sealed(db), 10, "all sealed")
        assert (report.ok, report.checked) == (True, 80)


async def test_a_stopping_process_seals_what_it_committed_last(own_db_url: str) -> None:
    db = Database(own_db_url)
    try:
        sealer = Sealer(db, AUDIT_KEY, poll=3600)  # never woken: only the shutdown pass runs
        async with db.write() as conn:
            await record(conn, AuditEntry("test.last_words"), NOW)
        assert (await verify(db, AUDIT_KEY)).unsealed == 1
        await sealer.flush()
        report = await verify(db, AUDIT_KEY)
        assert (report.ok, report.checked, report.unsealed, sealer.sealed) == (True, 1, 0, 1)
    finally:
        await db.dispose()


def _chain_written_before_0011(url: str) -> None:
    """Three entries chained the way kernel/audit.py did before revision 0011 (id as position, under the head)."""
    sha256_chain(url, 3, datetime(2026, 1, 1, tzinfo=UTC), step=timedelta(days=1), before_0011=True)


def sha256_chain(url: str, n: int, at: datetime, *, step: timedelta, before_0011: bool = False) -> None:
    """``n`` entries chained with plain SHA-256, as kernel/audit.py did before revision 0019 (and before 0011:
    without ``seq``, the head's ``last_id`` their last position)."""
    from sqlalchemy import text

    seq, head = ("", "last_id") if before_0011 else (", seq", "last_seq")

    async def go() -> None:
        async with Database(url) as db, db.write() as conn:
            prev = "0" * 64
            for i in range(1, n + 1):
                t = at + step * (i - 1)
                fields = [i, t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), None, None, "x", "ok", None, None, "{}", prev]
                digest = hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()
                await conn.execute(
                    text(f"INSERT INTO audit_log (id, at, action, outcome, detail{seq}, prev_hash, hash) "
                         f"VALUES (:i, :at, 'x', 'ok', '{{}}'{', :i' if seq else ''}, :p, :h)"),
                    {"i": i, "at": t, "p": prev, "h": digest},
                )  # fmt: skip
                prev = digest
            await conn.execute(text(f"UPDATE audit_head SET {head} = :n, last_hash = :h"), {"n": n, "h": prev})

    asyncio.run(go())


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_chain_written_before_the_sealer_still_verifies_and_grows(backend: str, tmp_path: Path) -> None:
    from contextlib import ExitStack

    from alembic import command

    from tests.conftest import temp_pg_database
    from tests.services import pg_url
    from zzd.migrate import alembic_config, upgrade

    with ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        else:
            url = pg_url(stack.enter_context(temp_pg_database("zzd_audit_seal", migrate=False)))
        command.upgrade(alembic_config(url), "0010_streams_retention")
        _chain_written_before_0011(url)
        upgrade(url, audit_key=AUDIT_KEY)  # revision 0019 re-seals the chain under the key

        async def after() -> tuple[object, ...]:
            db = Database(url)
            try:
                before = await verify(db, AUDIT_KEY)
                async with db.write() as conn:
                    new_id = await record(conn, AuditEntry("test.after_0011"), NOW)
                sealed = await seal(db, AUDIT_KEY)
                report = await verify(db, AUDIT_KEY)
                return before.ok, before.checked, new_id, sealed, report.ok, report.checked, report.last_seq
            finally:
                await db.dispose()

        # 0019's audit.rekeyed entry (id 4) is sealed with the test's one
        assert asyncio.run(after()) == (True, 3, 5, 2, True, 5, 5)
