"""The audit chain is keyed (HMAC-SHA-256, the key outside the database): a database writer without the key
cannot forge it; ``zzd audit verify`` needs the key and says so; the embedded default makes one; revision 0019
re-seals a chain written before and records what it found (docs/admin.md "The audit log")."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import delete, select, text, update

from kernel.audit import (
    AuditEntry,
    AuditKeyMismatch,
    AuditQuery,
    audit_head,
    audit_log,
    prune,
    query,
    record,
    seal,
)
from kernel.audit_verify import verify
from kernel.db.database import Database
from tests.admin.test_audit_seal import sha256_chain
from tests.conftest import AUDIT_KEY, FAST_PASSWORDS, TEST_KEYS, make_settings
from zzd.cli import main
from zzd.migrate import alembic_config, upgrade
from zzd.services import Services

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _db_copy(tmp_path: Path, sqlite_template: Path) -> str:
    shutil.copy(sqlite_template, tmp_path / "a.db")
    return f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"


def _write(url: str, n: int) -> None:
    async def go() -> None:
        async with Database(url) as db:
            for i in range(n):
                async with db.write() as conn:
                    await record(conn, AuditEntry("org.handover", 7, detail={"i": i}), T0 + timedelta(hours=i))

    asyncio.run(go())


def _sha256_chain(url: str, victim_seq: int) -> None:
    """What a database writer without the key does: change an entry, then recompute every hash from it on and
    the head with plain SHA-256 over the documented field list (the chain before this change verified it)."""

    async def go() -> None:
        async with Database(url) as db, db.write() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(select(audit_log).order_by(audit_log.c.seq))]
            prev = rows[victim_seq - 2]["hash"] if victim_seq > 1 else "0" * 64
            for r in rows[victim_seq - 1 :]:
                if r["seq"] == victim_seq:
                    r["actor_person_id"] = 99  # someone else did it
                at = r["at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                fields: list[Any] = [r["seq"], at, r["actor_person_id"], r["acting_position_id"], r["action"],
                                     r["outcome"], r["unit_id"], r["unit_path"], r["detail"], prev]  # fmt: skip
                if r["id"] != r["seq"]:
                    fields.append(r["id"])
                payload = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
                digest = hashlib.sha256(payload).hexdigest()
                await conn.execute(update(audit_log).where(audit_log.c.id == r["id"]).values(
                    actor_person_id=r["actor_person_id"], prev_hash=prev, hash=digest))  # fmt: skip
                prev = digest
            await conn.execute(update(audit_head).where(audit_head.c.id == 1).values(last_hash=prev))

    asyncio.run(go())


async def _edit(url: str, sql: str) -> None:
    async with Database(url) as db, db.write() as conn:
        await conn.execute(text(sql))


def _verify(env: dict[str, str | None], *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["audit", "verify", *args], env=env)
    return res.exit_code, res.output


def test_a_chain_recomputed_without_the_key_is_caught(tmp_path: Path, sqlite_template: Path) -> None:
    """The audit finding: with plain SHA-256 an edited entry plus a recomputed suffix and head verified."""
    url = _db_copy(tmp_path, sqlite_template)
    env: dict[str, str | None] = {"ZZD_DATABASE_URL": url, "ZZD_JWT_KEYS": TEST_KEYS}
    _write(url, 5)
    code, out = _verify(env)
    assert (code, json.loads(out)["ok"], json.loads(out)["checked"]) == (0, True, 5), out
    _sha256_chain(url, 3)
    code, out = _verify(env)
    report = json.loads(out)
    assert (code, report["ok"], report["bad_seq"], report["problem"]) == (
        1, False, 3, "the entry was changed after it was written"), out  # fmt: skip


async def _cut_tail(url: str, keep: int) -> None:
    """What the key cannot stop: delete the newest entries and put back the head as it was at ``keep``."""
    async with Database(url) as db, db.write() as conn:
        digest = (await conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == keep))).scalar_one()
        await conn.execute(delete(audit_log).where(audit_log.c.seq > keep))
        await conn.execute(update(audit_head).where(audit_head.c.id == 1).values(last_seq=keep, last_hash=digest))


def test_a_cut_tail_is_caught_against_a_head_kept_elsewhere(tmp_path: Path, sqlite_template: Path) -> None:
    """docs/admin.md told operators to keep the position and hash verify prints to catch a cut tail, but
    verify printed no hash and had no way to be given one back. It prints ``last_hash`` now, and
    ``--expect SEQ:HASH`` fails when the chain no longer holds that entry with that hash."""
    url = _db_copy(tmp_path, sqlite_template)
    env: dict[str, str | None] = {"ZZD_DATABASE_URL": url, "ZZD_JWT_KEYS": TEST_KEYS}
    _write(url, 5)
    code, out = _verify(env)
    report = json.loads(out)
    assert (code, report["last_seq"], len(report["last_hash"])) == (0, 5, 64), out
    kept = f"{report['last_seq']}:{report['last_hash']}"
    code, out = _verify(env, "--expect", kept)
    assert (code, json.loads(out)["expected"]) == (0, "matched"), out
    _write(url, 1)  # the log goes on: the kept entry is inside the chain now, not at its end
    code, out = _verify(env, "--expect", kept)
    assert (code, json.loads(out)["last_seq"], json.loads(out)["expected"]) == (0, 6, "matched"), out

    asyncio.run(_cut_tail(url, 3))
    code, out = _verify(env)
    assert code == 0, out  # the key alone cannot see it: every value put back was valid once
    code, out = _verify(env, "--expect", kept)
    report = json.loads(out)
    assert (code, report["ok"], report["bad_seq"]) == (1, False, 4), out
    assert report["problem"] == "the log ends at 3 but a kept verify reached 5: entries were cut"

    code, out = _verify(env, "--expect", f"2:{'0' * 64}")
    report = json.loads(out)
    assert (code, report["bad_seq"], report["problem"]) == (1, 2, "the kept entry 2 has another hash now"), out
    for bad in ("5", "x:" + "0" * 64, "0:" + "0" * 64, "5:abc"):
        code, out = _verify(env, "--expect", bad)
        assert code == 2 and "SEQ:HASH" in out, out


async def test_a_kept_head_that_retention_pruned_is_said_so_and_the_anchor_is_still_checked(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """A kept pair below the retention anchor cannot be checked (its entry is gone) and is not a break;
    the anchor itself is checked against the hash the head keeps for it."""
    url = _db_copy(tmp_path, sqlite_template)
    await asyncio.to_thread(_write, url, 5)  # at T0, T0 + 1 h, … T0 + 4 h
    async with Database(url) as db:
        await seal(db, AUDIT_KEY, wait=True)
        async with db.read() as conn:
            hashes = {int(q): str(h) for q, h in await conn.execute(select(audit_log.c.seq, audit_log.c.hash))}
        assert await prune(db, AUDIT_KEY, T0 + timedelta(hours=2, minutes=30), T0 + timedelta(days=300)) == 3
        await seal(db, AUDIT_KEY, wait=True)
        below = await verify(db, AUDIT_KEY, expect=(2, hashes[2]))
        at = await verify(db, AUDIT_KEY, expect=(3, hashes[3]))
        wrong = await verify(db, AUDIT_KEY, expect=(3, hashes[2]))
    assert (below.ok, below.expected, below.first_seq) == (True, "pruned", 4), below
    assert (at.ok, at.expected) == (True, "matched"), at
    assert (wrong.ok, wrong.problem) == (False, "the kept entry 3 has another hash now"), wrong


def test_verify_without_the_key_or_with_another_says_so(tmp_path: Path, sqlite_template: Path) -> None:
    url = _db_copy(tmp_path, sqlite_template)
    env: dict[str, str | None] = {"ZZD_DATABASE_URL": url, "ZZD_JWT_KEYS": TEST_KEYS}
    _write(url, 2)
    assert _verify(env)[0] == 0
    _write(url, 1)
    # No key anywhere (none set, no zzd-audit.key beside the database): exit 2, naming what to set.
    code, out = _verify({**env, "ZZD_AUDIT_KEY": None})
    assert code == 2 and "no audit key: set ZZD_AUDIT_KEY or ZZD_AUDIT_KEY_FILE" in out, out
    assert str(tmp_path / "zzd-audit.key") in out and not (tmp_path / "zzd-audit.key").exists()
    # Another key: named as such, and nothing sealed with it (the third entry waits for the right key).
    code, out = _verify({**env, "ZZD_AUDIT_KEY": "another-key-" + "b" * 32})
    assert (code, json.loads(out)["problem"], json.loads(out)["unsealed"]) == (
        1, "the audit key is not the one this log was sealed with: nothing can be checked with it", 1), out  # fmt: skip
    key_file = tmp_path / "key"
    key_file.write_text(AUDIT_KEY.decode() + "\n")
    code, out = _verify({**env, "ZZD_AUDIT_KEY": None, "ZZD_AUDIT_KEY_FILE": str(key_file)})
    assert (code, json.loads(out)["checked"], json.loads(out)["unsealed"]) == (0, 3, 0), out
    code, out = _verify({**env, "ZZD_AUDIT_KEY": "short"})
    short = "Error: configuration error: ZZD_AUDIT_KEY: the audit key must be at least 32 bytes"
    assert (code, out.strip()) == (1, short)

    async def sealing_with_another_key() -> None:
        async with Database(url) as db:
            async with db.write() as conn:
                await record(conn, AuditEntry("test.x"), T0)
            with pytest.raises(AuditKeyMismatch):
                await seal(db, b"k" * 32)

    asyncio.run(sealing_with_another_key())


def test_the_embedded_default_makes_its_key_beside_the_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'zzd.db'}"
    (tmp_path / "data").mkdir()
    env: dict[str, str | None] = {"ZZD_DATABASE_URL": url, "ZZD_JWT_KEYS": TEST_KEYS, "ZZD_AUDIT_KEY": None}
    runner = CliRunner()
    assert runner.invoke(main, ["migrate"], env=env).exit_code == 0
    key_file = tmp_path / "data" / "zzd-audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_text().strip()) >= 32
    create = ["person", "create", "--login", "root", "--name", "管理员", "--password", "pw-2026-long"]
    res = runner.invoke(main, create, env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["admin", "grant", "--login", "root", "--unit", "*", "--perm", "all"], env=env)
    assert res.exit_code == 0, res.output
    code, out = _verify(env)
    assert (code, json.loads(out)["ok"], json.loads(out)["checked"]) == (0, True, 2), out
    before = key_file.read_text()
    assert runner.invoke(main, ["migrate"], env=env).exit_code == 0 and key_file.read_text() == before


@pytest.mark.parametrize("tampered", [False, True])
def test_0019_reseals_an_old_chain_and_records_what_it_found(tmp_path: Path, tampered: bool) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0018_notice_unfilled")
    sha256_chain(url, 4, T0 + timedelta(minutes=1), step=timedelta(minutes=1))
    if tampered:  # entry 2 edited after it was sealed
        asyncio.run(_edit(url, "UPDATE audit_log SET outcome = 'denied' WHERE id = 2"))
    with pytest.raises(RuntimeError, match="re-seals the 4 sealed audit entries with the audit key"):
        upgrade(url)  # without the key: refused, nothing changed (one transaction)
    upgrade(url, audit_key=AUDIT_KEY)

    async def after() -> tuple[Any, ...]:
        async with Database(url) as db:
            assert await seal(db, AUDIT_KEY) == 1
            report = await verify(db, AUDIT_KEY)
            rekeyed, _ = await query(db, AuditQuery(action="audit.rekeyed"))
            return report.ok, report.checked, rekeyed[0]["outcome"], rekeyed[0]["detail"]

    ok, checked, outcome, detail = asyncio.run(after())
    assert (ok, checked) == (True, 5)
    problem = "entry 2 (id 2) had been changed" if tampered else None
    assert (outcome, detail) == ("failed" if tampered else "ok", {
        "algorithm": "HMAC-SHA-256", "problem_before": problem, "resealed": 4, "through_seq": 4}), detail  # fmt: skip


async def test_a_server_with_another_key_does_not_start(own_db_url: str) -> None:
    """Its sealer would refuse every pass, leaving entries unsealed for ever: it stops at start instead."""
    async with Database(own_db_url) as db:
        async with db.write() as conn:
            await record(conn, AuditEntry("test.x"), T0)
        assert await seal(db, AUDIT_KEY) == 1
    s = Services.build(make_settings(own_db_url, audit_key="another-key-" + "c" * 32), passwords=FAST_PASSWORDS)
    try:
        with pytest.raises(AuditKeyMismatch, match="is not the key this database's audit log is sealed with"):
            await s.start()
        assert s.sealer is None
    finally:
        await s.db.dispose()
