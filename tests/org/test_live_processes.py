"""Two server processes on one PostgreSQL: structural edits and the directory follow within a second (issues 17, 18)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kernel.clock import SystemClock
from kernel.db.database import Database
from org_tree.grant_service import GrantService
from org_tree.holder import OrgIndexHolder
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from tests.client import PASSWORD, login
from tests.conftest import FAST_PASSWORDS
from tests.procs import zzd_processes
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


async def test_structural_edits_and_directory_reach_the_other_process(
    own_pg_database: str, redis_url: str, tmp_path: Path
) -> None:
    from org_tree.importer import import_divisions
    from tests.notices.conftest import write_divisions

    db = Database(own_pg_database)
    try:
        await import_divisions(db, write_divisions(tmp_path / "div", townships=2, villages=2), grids_per_village=1)
        people = PersonDirectory(db, SystemClock())
        admin = await people.create("管理员", login="orgadmin", password_hash=FAST_PASSWORDS.hash_sync(PASSWORD))
        heir = await people.create("欧阳晓岚")
        holder = OrgIndexHolder(db)
        await holder.load()
        org = OrgService(db, SystemClock(), holder)
        await GrantService(db, SystemClock(), holder, org).grant(
            SYSTEM, admin.id, None, frozenset({"org", "assignments", "roles"})
        )
    finally:
        await db.dispose()
    async with zzd_processes(own_pg_database, redis_url, 2) as (p1, p2):
        hdr1 = {"Authorization": f"Bearer {(await login(p1.http, 'orgadmin'))['access_token']}"}
        hdr2 = {"Authorization": f"Bearer {(await login(p2.http, 'orgadmin'))['access_token']}"}
        async with httpx.AsyncClient() as h:

            async def on2(path: str) -> dict:  # type: ignore[type-arg]
                return (await h.get(f"{p2.http}{path}", headers=hdr2)).json()  # type: ignore[no-any-return]

            async def edit(method: str, path: str, body: dict) -> dict:  # type: ignore[type-arg]
                r = await h.request(method, f"{p1.http}{path}", json=body, headers=hdr1)
                assert r.status_code in (200, 201), r.text
                return r.json()  # type: ignore[no-any-return]

            async def seen(check, what: str) -> None:  # type: ignore[no-untyped-def]
                await wait_until(check, 1.0, f"process 2 to see {what} within 1 s", interval=0.02)

            made = await edit("POST", "/api/v1/org/units", {"parent": "990101001001", "name": "新网格"})

            async def has_unit() -> bool:
                return (await on2(f"/api/v1/org/units/{made['code']}")).get("name") == "新网格"

            await seen(has_unit, "a new unit")
            await edit("POST", "/api/v1/org/units/990101001001/move", {"parent": "990101002"})

            async def moved() -> bool:
                return (await on2("/api/v1/org/units/990101001001"))["path"][-2] == "01镇2"

            await seen(moved, "a moved village")
            await edit("PATCH", "/api/v1/org/units/990101001002", {"name": "金桂社区"})

            async def found_unit() -> bool:
                page = await on2("/api/v1/org/search?q=jinguishequ")
                return bool(page["hits"]) and page["hits"][0]["unit_code"] == "990101001002"

            await seen(found_unit, "a renamed unit by its pinyin")
            pos = await edit("POST", "/api/v1/org/positions", {"unit": made["code"], "role": "grid_worker"})
            await edit("PATCH", "/api/v1/org/roles/grid_worker", {"name": "专职网格管理员"})

            async def role_renamed() -> bool:
                return (await on2(f"/api/v1/org/positions/{pos['id']}")).get("role") == "专职网格管理员"

            await seen(role_renamed, "a new position with its renamed role")
            await edit("POST", f"/api/v1/org/positions/{pos['id']}/handover", {"person_id": heir.id})

            async def holder_found() -> bool:
                page = await on2("/api/v1/org/search?q=ouyangxiaolan")
                return [x["position_id"] for x in page["hits"]] == [pos["id"]]

            await seen(holder_found, "the new holder by name in the directory")
            await edit("POST", f"/api/v1/org/positions/{pos['id']}/retire", {})

            async def retired() -> bool:
                return (await h.get(f"{p2.http}/api/v1/org/positions/{pos['id']}", headers=hdr2)).status_code == 404

            await seen(retired, "a retired position")
            assert (await on2("/api/v1/org/search?q=欧阳晓岚"))["total"] == 0


async def test_a_rename_on_one_process_relabels_a_holder_connected_to_the_other(
    own_pg_database: str, redis_url: str, tmp_path: Path
) -> None:
    """``positions.changed`` is written in the rename's transaction on process 1; the holder's socket on process 2
    gets it (broker hint or safety poll), with the new name, though process 2's index had not seen the rename."""
    from org_tree.importer import import_divisions
    from tests.client import Client
    from tests.notices.conftest import write_divisions

    db = Database(own_pg_database)
    try:
        await import_divisions(db, write_divisions(tmp_path / "div", townships=1, villages=2), grids_per_village=1)
        people = PersonDirectory(db, SystemClock())
        admin = await people.create("管理员", login="orgadmin", password_hash=FAST_PASSWORDS.hash_sync(PASSWORD))
        grid = await people.create("网格员", login="gridder", password_hash=FAST_PASSWORDS.hash_sync(PASSWORD))
        holder = OrgIndexHolder(db)
        await holder.load()
        org = OrgService(db, SystemClock(), holder)
        await GrantService(db, SystemClock(), holder, org).grant(SYSTEM, admin.id, None, frozenset({"org"}))
        idx = holder.index
        role = idx.role_id("grid_worker")
        [k] = [k for k in idx.unit_slots(idx.unit("990101001001001")) if idx.position_role_id(k) == role]
        pos = idx.position_id(k)
        await org.handover(SYSTEM, pos, grid.id)
    finally:
        await db.dispose()
    async with zzd_processes(own_pg_database, redis_url, 2) as (p1, p2):
        hdr1 = {"Authorization": f"Bearer {(await login(p1.http, 'orgadmin'))['access_token']}"}
        ws = await Client.connect(p2.ws, (await login(p2.http, "gridder"))["access_token"])
        async with httpx.AsyncClient() as h:
            r = await h.patch(f"{p1.http}/api/v1/org/units/990101001001", json={"name": "金桂社区"}, headers=hdr1)
            assert r.status_code == 200, r.text
        [ev] = await ws.wait_matching(lambda e: e["kind"] == "positions.changed")
        assert ev["data"]["person_id"] == grid.id and (ev["data"]["gained"], ev["data"]["lost"]) == ([], [])
        [view] = ev["data"]["positions"]
        assert view["id"] == pos and view["unit_path"] == ["测试省", "甲市", "柯城区", "01镇1", "金桂社区", "第1网格"]
        await ws.close()
