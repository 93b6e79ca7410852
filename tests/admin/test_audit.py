"""The audit log: the chain catches edited, inserted and deleted rows; entries commit with their change;
auditors read only their subtree (REST and CLI), on both backends."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import delete, insert, select, update

from kernel.audit import AuditEntry, AuditQuery, audit_log, entry_hash, prune, query, record, seal
from kernel.audit_verify import VerifyReport, verify
from kernel.db.database import Database
from kernel.errors import NotFound
from org_tree.jurisdiction import SYSTEM
from tests.client import login, new_person
from tests.conftest import AUDIT_KEY, RunningServer
from tests.org_server import auth, position_at, seat, slot
from tests.waiting import wait_until

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _write(db: Database, n: int, start: datetime = T0) -> None:
    """``n`` entries, each in its own transaction, then sealed (no sealer runs beside these tests)."""
    for i in range(n):
        async with db.write() as conn:
            await record(conn, AuditEntry("test.step", i + 1, detail={"i": i, "名": "李四"}), start + timedelta(days=i))
    assert await seal(db, AUDIT_KEY) == n


async def test_verify_catches_edits_insertions_deletions_and_a_cut_tail(own_db_url: str) -> None:
    db = Database(own_db_url)
    try:
        await _write(db, 6)
        async with db.read() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(select(audit_log).order_by(audit_log.c.id))]
        assert (await verify(db, AUDIT_KEY)).to_dict() == {
            "ok": True, "checked": 6, "first_seq": 1, "last_seq": 6, "problem": None, "bad_seq": None,
            "bad_id": None, "unsealed": 0, "unsealed_ids": [], "oldest_unsealed_at": None,
            "last_hash": rows[5]["hash"], "expected": None,
        }  # fmt: skip
        # an edited detail
        async with db.write() as conn:
            await conn.execute(update(audit_log).where(audit_log.c.id == 3).values(detail='{"i":99}'))
        assert ((r := await verify(db, AUDIT_KEY)).ok, r.bad_id) == (False, 3)
        async with db.write() as conn:
            await conn.execute(update(audit_log).where(audit_log.c.id == 3).values(detail=rows[2]["detail"]))
        assert (await verify(db, AUDIT_KEY)).ok
        # an edit that also recomputes the row's own hash: the next row's prev_hash gives it away
        forged = {**rows[2], "actor_person_id": 77}
        forged["hash"] = entry_hash(forged, AUDIT_KEY)
        async with db.write() as conn:
            await conn.execute(
                update(audit_log).where(audit_log.c.id == 3).values(actor_person_id=77, hash=forged["hash"])
            )
        assert ((r := await verify(db, AUDIT_KEY)).ok, r.bad_id) == (False, 4)
        async with db.write() as conn:
            await conn.execute(
                update(audit_log).where(audit_log.c.id == 3).values(actor_person_id=3, hash=rows[2]["hash"])
            )
        # a deleted row in the middle
        async with db.write() as conn:
            await conn.execute(delete(audit_log).where(audit_log.c.id == 4))
        r = await verify(db, AUDIT_KEY)
        assert (r.ok, r.bad_seq, r.bad_id, r.problem) == (False, 4, None, "entry 4 is missing")
        async with db.write() as conn:
            await conn.execute(insert(audit_log).values(**rows[3]))
        assert (await verify(db, AUDIT_KEY)).ok
        # the newest row deleted (the head still names it), or a row appended past the head
        async with db.write() as conn:
            await conn.execute(delete(audit_log).where(audit_log.c.id == 6))
        assert not (await verify(db, AUDIT_KEY)).ok
        async with db.write() as conn:
            await conn.execute(insert(audit_log).values(**rows[5]))
            extra = {**rows[5], "id": 7, "seq": 7, "prev_hash": rows[5]["hash"], "action": "test.forged"}
            extra["hash"] = entry_hash(extra, AUDIT_KEY)
            await conn.execute(insert(audit_log).values(**extra))
        assert ((r := await verify(db, AUDIT_KEY)).ok, r.problem) == (False, "the log ends at 7 but the head names 6")
        async with db.write() as conn:
            await conn.execute(delete(audit_log).where(audit_log.c.id == 7))
        assert (await verify(db, AUDIT_KEY)).ok
        # an entry's id changed (its position and fields untouched): the hash covers the id too
        async with db.write() as conn:
            await conn.execute(update(audit_log).where(audit_log.c.id == 2).values(id=200))
        assert ((r := await verify(db, AUDIT_KEY)).ok, r.bad_seq, r.bad_id) == (False, 2, 200)
    finally:
        await db.dispose()


async def test_retention_moves_the_anchor_and_the_chain_still_verifies(own_db_url: str) -> None:
    db = Database(own_db_url)
    try:
        await _write(db, 5)
        async with db.write() as conn:  # committed but not sealed yet: pruning leaves it alone
            await record(conn, AuditEntry("test.late"), T0)
        deleted = await prune(db, AUDIT_KEY, T0 + timedelta(days=2), T0 + timedelta(days=300))
        assert deleted == 2
        report = await verify(db, AUDIT_KEY)
        assert (report.ok, report.first_seq, report.last_seq, report.unsealed_ids) == (True, 3, 5, (6, 7))
        assert await seal(db, AUDIT_KEY) == 2
        report = await verify(db, AUDIT_KEY)
        assert (report.ok, report.first_seq, report.last_seq, report.unsealed) == (True, 3, 7, 0)
        items, _ = await query(db, AuditQuery(action="audit.pruned"))
        assert items[0]["detail"]["deleted"] == 2
        # deleting the oldest kept row is still caught
        async with db.write() as conn:
            await conn.execute(delete(audit_log).where(audit_log.c.id == 3))
        assert not (await verify(db, AUDIT_KEY)).ok
    finally:
        await db.dispose()


async def test_entries_commit_with_their_change_and_auditors_see_their_subtree(org_server: RunningServer) -> None:
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    idx = s.org_index.index
    county = "990101"
    head_id, _, head_pos, head_tok = await seat(rs, county, "county_head")
    pos = idx.position_id(slot(idx, "990101001001", "village_secretary"))
    far = idx.position_id(slot(idx, "990102001001", "village_secretary"))
    with pytest.raises(NotFound):  # the change fails, so no entry: the audit row is in its transaction
        await s.org.handover(SYSTEM, pos, 10**9)
    newcomer, _ = await new_person(s)
    await s.org.handover(SYSTEM, pos, newcomer)
    await s.org.handover(SYSTEM, far, newcomer)
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(head_tok)) as h:
        r = await h.post("/api/v1/notices", json={
            "as_position": head_pos, "selector": "村书记@990101/**", "client_msg_id": "a-1",
            "title": "通知", "body": "开会",
        })  # fmt: skip
        assert r.status_code in (200, 201), r.text
        r = await h.post("/api/v1/tasks", json={
            "as_position": head_pos, "selector": f"pos:{pos}", "client_msg_id": "t-1",
            "category": "general", "title": "核查", "body": "请核查",
        })  # fmt: skip
        assert r.status_code == 201, r.text
    auditor_id, auditor_login = await new_person(s)
    await s.grants.grant(SYSTEM, auditor_id, county, frozenset({"audit"}))
    tok = (await login(rs.http, auditor_login))["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        entries = (await h.get("/api/v1/audit")).json()["entries"]
        county_path = f"/{idx.unit_id(idx.unit('99'))}/{idx.unit_id(idx.unit('9901'))}/{idx.unit_id(idx.unit(county))}/"
        assert entries and all(e["unit_path"].startswith(county_path) for e in entries)
        actions = [e["action"] for e in entries]
        assert actions.count("org.handover") >= 2  # seat() and ours; the failed one left nothing
        notice = next(e for e in entries if e["action"] == "notice.sent")
        assert (notice["actor_person_id"], notice["acting_position_id"]) == (head_id, head_pos)
        assert notice["detail"]["positions"] == 8 and "村书记" in notice["detail"]["selector"]
        task = next(e for e in entries if e["action"] == "task.created")
        assert task["detail"]["audience"] == 1 and task["detail"]["selector"] == f"pos:{pos}"
        # an auditor of the subtree reads the task itself; one of another county does not
        task_id = task["detail"]["task_ids"][0]
        assert (await h.get(f"/api/v1/tasks/{task_id}")).status_code == 200
    other_id, other_login = await new_person(s)
    await s.grants.grant(SYSTEM, other_id, "990102", frozenset({"audit"}))
    other_tok = (await login(rs.http, other_login))["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(other_tok)) as h:
        assert (await h.get(f"/api/v1/tasks/{task_id}")).status_code == 404
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        assert not any(e["detail"].get("position_id") == far for e in entries)
        by_actor = (await h.get("/api/v1/audit", params={"actor": head_id})).json()["entries"]
        assert {e["action"] for e in by_actor} == {"notice.sent", "task.created"}
        later = (await h.get("/api/v1/audit", params={"since": "2999-01-01T00:00:00+00:00"})).json()
        assert later == {"entries": [], "next_before": None}
        page = (await h.get("/api/v1/audit", params={"limit": 2})).json()
        rest = (await h.get("/api/v1/audit", params={"before": page["next_before"]})).json()["entries"]
        assert [e["id"] for e in page["entries"] + rest] == [e["id"] for e in entries]
        r = await h.get("/api/v1/audit", params={"unit": "990102"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant")
        assert (await h.get("/api/v1/audit", params={"since": "yesterday"})).status_code == 400
    # sign-ins carry no unit: only a whole-tree auditor sees them
    items, _ = await query(s.db, AuditQuery(action="auth.login", actor_person_id=auditor_id))
    assert items and items[0]["unit_path"] is None
    # the server's own sealer chains every committed entry without being asked
    report = await wait_until(lambda: _sealed(s.db), what="every entry sealed by the server's sealer")
    assert report.ok
    assert all(e["seq"] and e["hash"] for e in (await h_entries(rs, tok)))


async def test_a_refused_attempt_on_the_neighbour_is_seen_by_the_actors_own_auditors(org_server: RunningServer) -> None:
    """Refusals were filed under the target unit only, so county A's auditor never saw A's administrator
    attack county B (found by the administration audit); now both counties' auditors see the one entry."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    idx = s.org_index.index
    admin_id, admin_login = await new_person(s, "甲县管理员")
    await s.grants.grant(SYSTEM, admin_id, "990101", frozenset({"assignments"}))
    victim = idx.position_id(slot(idx, "990102001001", "village_secretary"))
    tok = (await login(rs.http, admin_login))["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        r = await h.post(f"/api/v1/org/positions/{victim}/handover", json={"person_id": admin_id})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "no_grant"), r.text

    async def denials(audited: str, **params: str) -> list[dict[str, object]]:
        pid, lg = await new_person(s, "审计员")
        await s.grants.grant(SYSTEM, pid, audited, frozenset({"audit"}))
        t = (await login(rs.http, lg))["access_token"]
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(t)) as h:
            r = await h.get("/api/v1/audit", params={"action": "admin.denied", "actor": str(admin_id), **params})
            assert r.status_code == 200, r.text
            return r.json()["entries"]  # type: ignore[no-any-return]

    own = await denials("990101")  # county A: the attacker's own
    ids = [[e["id"] for e in found] for found in (own, await denials("990102"), await denials("990101", unit="990101"))]
    assert len(own) == 1 and ids == [[own[0]["id"]]] * 3, ids  # the same one entry from both sides
    entry = own[0]
    assert (entry["unit_id"], entry["outcome"], entry["detail"]) == (
        idx.unit_id(idx.unit("990102001001")), "denied",
        {"attempted": "org.handover", "permission": "assignments", "position_id": victim,
         "actor_unit_ids": [idx.unit_id(idx.unit("990101"))]},
    )  # fmt: skip
    # Only the two sides: a township of county A (not the administrator's unit) sees nothing of it.
    assert await denials("990101001") == []


async def _sealed(db: Database) -> VerifyReport | None:
    report = await verify(db, AUDIT_KEY)
    return report if report.unsealed == 0 else None


async def h_entries(rs: RunningServer, tok: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        entries: list[dict[str, object]] = (await h.get("/api/v1/audit")).json()["entries"]
        return entries


def test_cli_grants_the_first_administrator_and_verifies_the_chain(tmp_path: Path, sqlite_template: Path) -> None:
    import shutil

    from zzd.cli import main

    db_file = tmp_path / "cli.db"
    shutil.copy(sqlite_template, db_file)
    url = f"sqlite+aiosqlite:///{db_file}"
    env = {"ZZD_DATABASE_URL": url, "ZZD_JWT_KEYS": "t1:" + "k" * 40}

    async def person() -> int:
        from kernel.clock import SystemClock
        from org_tree.people import PersonDirectory

        db = Database(url)
        try:
            return (await PersonDirectory(db, SystemClock()).create("管理员", login="root-admin")).id
        finally:
            await db.dispose()

    pid = asyncio.run(person())
    runner = CliRunner()
    res = runner.invoke(main, ["admin", "grant", "--login", "root-admin", "--unit", "*", "--perm", "all"], env=env)
    assert res.exit_code == 0, res.output
    grant = json.loads(res.output)
    assert (grant["person_id"], grant["unit_id"], len(grant["perms"])) == (pid, None, 7)
    res = runner.invoke(main, ["admin", "grant", "--login", "root-admin", "--unit", "*", "--perm", "root"], env=env)
    assert res.exit_code != 0 and "perms must be" in res.output
    res = runner.invoke(main, ["audit", "query", "--action", "admin.granted"], env=env)
    assert json.loads(res.output.splitlines()[0])["detail"]["person_id"] == pid
    assert json.loads(runner.invoke(main, ["audit", "verify"], env=env).output)["ok"] is True

    async def tamper() -> None:
        db = Database(url)
        try:
            async with db.write() as conn:
                await conn.execute(update(audit_log).values(outcome="denied"))
        finally:
            await db.dispose()

    asyncio.run(tamper())
    res = runner.invoke(main, ["audit", "verify"], env=env)
    assert res.exit_code == 1 and json.loads(res.output)["bad_id"] == 1
    res = runner.invoke(main, ["admin", "list"], env=env)
    assert [json.loads(line)["id"] for line in res.output.splitlines()] == [grant["id"]]
    res = runner.invoke(main, ["admin", "revoke", str(grant["id"])], env=env)
    assert res.exit_code == 0 and json.loads(res.output)["revoked"] is True
    assert runner.invoke(main, ["admin", "list"], env=env).output == ""


async def test_a_refusal_answered_like_an_unknown_id_tells_the_actors_side_no_more_than_the_404(
    org_server: RunningServer,
) -> None:
    """Revoking a grant or ending an assignment outside one's grant answers 404, as for an id that does
    not exist, so that ids cannot be probed. But the ``admin.denied`` entry was written only for ids that
    exist, under the target's unit and with the grant's permission, and the actor's own county audits it:
    an administrator who also holds ``audit`` read back which of the ids 1..N exist, and in which county
    each grant and assignment lies (found by the trust audit). Now an unknown id is on record too, and
    seen through ``actor_unit_ids`` alone such an entry names no target; the target's auditors see it whole."""
    rs = org_server
    s = rs.services_obj  # type: ignore[attr-defined]
    idx = s.org_index.index
    admin_id, admin_login = await new_person(s, "甲县管理员")
    await s.grants.grant(SYSTEM, admin_id, "990101", frozenset({"assignments", "grants", "audit"}))
    other_id, _ = await new_person(s, "乙县审计员")
    theirs = await s.grants.grant(SYSTEM, other_id, "990102", frozenset({"audit", "apps"}))
    held, *_ = await seat(rs, "990102001001", "village_secretary")
    assignment = next(a for a in await s.org.history(SYSTEM, position_at(rs, "990102001001", "village_secretary"))
                      if a.person_id == held and a.end_at is None).id  # fmt: skip
    unknown = 10**12
    tok = (await login(rs.http, admin_login))["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(tok)) as h:
        answers = [await h.post(f"/api/v1/admin/grants/{gid}/revoke") for gid in (theirs.id, unknown)] + [
            await h.post(f"/api/v1/org/assignments/{aid}/end") for aid in (assignment, unknown)
        ]
        assert [(r.status_code, r.json()["error"]["message"]) for r in answers] == [
            (404, "no such grant")] * 2 + [(404, "no such assignment")] * 2  # fmt: skip
        mine = (await h.get("/api/v1/audit", params={"action": "admin.denied", "actor": str(admin_id)})).json()
    # nothing changed
    assert [g.id for g in await s.grants.visible(SYSTEM, other_id)] == [theirs.id]
    assert any(a.id == assignment and a.end_at is None
               for a in await s.org.history(SYSTEM, position_at(rs, "990102001001", "village_secretary")))  # fmt: skip

    def shown(e: dict[str, Any]) -> tuple[object, ...]:
        d = {k: v for k, v in e["detail"].items() if k not in ("grant_id", "assignment_id")}
        return e["unit_id"], e["unit_path"], d

    entries = mine["entries"]
    assert len(entries) == 4, entries  # every one of the four attempts is on record
    by_id = {(e["detail"].get("grant_id"), e["detail"].get("assignment_id")): e for e in entries}
    a_unit = idx.unit_id(idx.unit("990101"))
    revoke_known, revoke_unknown = by_id[(theirs.id, None)], by_id[(unknown, None)]
    end_known, end_unknown = by_id[(None, assignment)], by_id[(None, unknown)]
    # seen from the actor's side, an existing id and an unknown one look alike: no unit, no permission of theirs
    revoked = {"attempted": "admin.revoked", "permission": "grants", "hidden": True, "actor_unit_ids": [a_unit]}
    assert shown(revoke_known) == shown(revoke_unknown) == (None, None, revoked)
    assert shown(end_known) == shown(end_unknown) == (
        None, None,
        {"attempted": "org.assignment_ended", "permission": "assignments", "hidden": True, "actor_unit_ids": [a_unit]},
    )  # fmt: skip
    # county B's auditor sees the attempts on B's grant and assignment with their unit
    b_id, b_login = await new_person(s, "乙县审计员2")
    await s.grants.grant(SYSTEM, b_id, "990102", frozenset({"audit"}))
    b_tok = (await login(rs.http, b_login))["access_token"]
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(b_tok)) as h:
        theirs_view = (await h.get("/api/v1/audit", params={"action": "admin.denied", "actor": str(admin_id)})).json()
    b_ids = {e["id"]: e for e in theirs_view["entries"]}
    assert set(b_ids) == {revoke_known["id"], end_known["id"]}, theirs_view
    b_unit = idx.unit_id(idx.unit("990102"))
    assert b_ids[revoke_known["id"]]["unit_id"] == b_unit
    assert b_ids[end_known["id"]]["unit_id"] == idx.unit_id(idx.unit("990102001001"))
