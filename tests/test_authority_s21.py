"""S21 (b) and (d): authority that changes under a live connection, across two processes.

The bar (docs/reliability.md): (b) when a person's position moves from county A to
county B — the person is transferred, or the unit holding their position is moved —
within 5 s nothing addressed to A's scope reaches them any more, their sends into A's
scope are refused, and B's scope is theirs; (d) when a notice recipient's position is
deleted (retired) mid-stream, nothing more is delivered for it: no reminders, no new
notices through selectors. Edits are made on process 1; the people affected are
connected to process 2 and the senders act there, so process 2's live index is what
is tested.

"Nothing reaches them" is shown without waiting for silence: after the notice that
must not arrive, a sentinel that must arrive is written to the same person's stream;
the stream is ordered, so once the sentinel is there the forbidden event would have
come before it.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.clock import SystemClock
from kernel.db.database import Database
from org_tree.grant_service import GrantService
from org_tree.holder import OrgIndexHolder
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from tests.client import PASSWORD, Client, login
from tests.conftest import FAST_PASSWORDS
from tests.org_server import slot
from tests.procs import ServerProcess, zzd_processes
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

A, B = "990101", "990102"
MOVED_TOWNSHIP = "990101001"
W_GRID = "990101001001001"  # in the township that moves from A to B
Q_GRID = "990101002001001"  # stays in A; its position is retired in (d)
BAR = 5.0  # seconds: the bar's re-check interval


async def _seed(url: str, tmp_path: Path) -> dict[str, Any]:
    """The tree, an administrator and the people of the scenario; returns their logins and positions."""
    from org_tree.importer import import_divisions
    from tests.notices.conftest import write_divisions

    db = Database(url)
    try:
        await import_divisions(db, write_divisions(tmp_path / "div", townships=2, villages=2), grids_per_village=1)
        people = PersonDirectory(db, SystemClock())
        holder = OrgIndexHolder(db)
        await holder.load()
        org = OrgService(db, SystemClock(), holder)
        pw = FAST_PASSWORDS.hash_sync(PASSWORD)
        admin = await people.create("管理员", login="s21admin", password_hash=pw)
        await GrantService(db, SystemClock(), holder, org).grant(
            SYSTEM, admin.id, None, frozenset({"org", "assignments"})
        )
        seats = {
            "mayor": ("9901", "mayor"),
            "head_a": (A, "county_head"),
            "head_b": (B, "county_head"),
            "water": (A, "water_affairs"),  # transferred to B's 水务负责人 in (b)
            "w": (W_GRID, "grid_worker"),
            "q": (Q_GRID, "grid_worker"),
        }
        out: dict[str, Any] = {"admin": "s21admin"}
        for name, (unit, role) in seats.items():
            person = await people.create(f"甲{name}", login=f"s21{name}", password_hash=pw)
            position = holder.index.position_id(slot(holder.index, unit, role))
            view = await org.handover(SYSTEM, position, person.id)
            out[name] = {"login": f"s21{name}", "person": person.id, "position": position, "assignment": view.id}
        out["water_b"] = holder.index.position_id(slot(holder.index, B, "water_affairs"))
        return out
    finally:
        await db.dispose()


Call = Callable[..., Awaitable[httpx.Response]]


def _caller(h: httpx.AsyncClient, tok: dict[str, str]) -> Call:
    """``call(process, who, method, path, body=None)``: one request as ``who`` to that process."""

    async def call(proc: ServerProcess, who: str, method: str, path: str, body: Any = None) -> httpx.Response:
        return await h.request(method, f"{proc.http}{path}", json=body, headers={"Authorization": f"Bearer {tok[who]}"})

    return call


def _notice(as_position: int, selector: str, title: str, **extra: Any) -> dict[str, Any]:
    body = {"as_position": as_position, "selector": selector, "client_msg_id": secrets.token_hex(6), "title": title}
    return {**body, "body": "S21", **extra}


def _notice_ids(c: Client, kind: str = "notice.new") -> list[int]:
    return [int(e["data"]["notice_id"]) for e in c.matching(lambda e: e["kind"] == kind)]


async def _got(c: Client, notice_id: int, kind: str = "notice.new") -> dict[str, Any]:
    [ev] = await c.wait_matching(lambda e: e["kind"] == kind and e["data"]["notice_id"] == notice_id)
    return ev


async def _sentinel(sender: Client, to: Client, to_person: int) -> None:
    """A direct message that must reach ``to``: everything committed before it is in ``to``'s stream by then."""
    body = f"哨兵-{secrets.token_hex(4)}"
    assert (await sender.send_message(to_person, body))["type"] == "ok"
    await to.wait_matching(lambda e: e["kind"] == "message.new" and e["data"].get("body") == body)


async def test_s21b_transfer_and_moved_unit_take_the_old_scope_away_within_5_s(
    own_pg_database: str, redis_url: str, tmp_path: Path
) -> None:
    seed = await _seed(own_pg_database, tmp_path)
    water, w, mayor = seed["water"], seed["w"], seed["mayor"]
    async with zzd_processes(own_pg_database, redis_url, 2) as (p1, p2), httpx.AsyncClient() as h:
        tok = {k: (await login(p2.http, v["login"]))["access_token"] for k, v in seed.items() if isinstance(v, dict)}
        tok["admin"] = (await login(p1.http, seed["admin"]))["access_token"]

        call = _caller(h, tok)

        async def send(who: str, body: dict[str, Any]) -> dict[str, Any]:
            r = await call(p2, who, "POST", "/api/v1/notices", body)
            assert r.status_code == 201, r.text
            return r.json()  # type: ignore[no-any-return]

        async def pending_persons(who: str, nid: int, unit: str) -> set[int]:
            r = await call(p2, who, "GET", f"/api/v1/notices/{nid}/pending?unit={unit}&limit=500")
            assert r.status_code == 200, r.text
            return {int(i["person_id"]) for i in r.json()["items"]}

        p_water = await Client.connect(p2.ws, tok["water"])
        p_w = await Client.connect(p2.ws, tok["w"])
        m = await Client.connect(p2.ws, tok["mayor"])
        try:
            # Before: A's addressing reaches both of them (the test can fail).
            to_water_a = await send("mayor", _notice(mayor["position"], f"水务负责人@{A}", "甲县水务"))
            to_workers_a = await send("head_a", _notice(seed["head_a"]["position"], f"专职网格员@{A}/**", "甲县网格"))
            assert to_water_a["persons"] == 1 and to_workers_a["positions"] == 4
            await _got(p_water, to_water_a["notice_id"])
            await _got(p_w, to_workers_a["notice_id"])

            # The edits, on process 1: the 水务负责人 is transferred from A to B; W's township moves to B.
            r = await call(p1, "admin", "POST", f"/api/v1/org/positions/{seed['water_b']}/assignments",
                           {"person_id": water["person"]})  # fmt: skip
            assert r.status_code == 201, r.text
            r = await call(p1, "admin", "POST", f"/api/v1/org/assignments/{water['assignment']}/end")
            assert r.status_code == 200, r.text
            r = await call(p1, "admin", "POST", f"/api/v1/org/units/{MOVED_TOWNSHIP}/move", {"parent": B})
            assert r.status_code == 200, r.text

            async def applied_on_p2() -> bool:
                old = await call(p2, "water", "POST", "/api/v1/notices/preview",
                                 {"as_position": water["position"], "selector": f"专职网格员@{A}/**"})  # fmt: skip
                new = await call(p2, "water", "POST", "/api/v1/notices/preview",
                                 {"as_position": seed["water_b"], "selector": f"专职网格员@{B}/**"})  # fmt: skip
                at_w = {"as_position": seed["head_b"]["position"], "selector": f"专职网格员@{W_GRID}"}
                moved = await call(p2, "head_b", "POST", "/api/v1/notices/preview", at_w)
                return old.status_code == 403 and new.status_code == 200 and moved.status_code == 200

            await wait_until(applied_on_p2, BAR, "process 2 to apply the transfer and the move within 5 s")

            # Sends into A's scope are refused, and change nothing.
            old_seat = _notice(water["position"], f"专职网格员@{A}/**", "旧岗位")
            refused = await call(p2, "water", "POST", "/api/v1/notices", old_seat)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "forbidden"
            outside = _notice(seed["water_b"], f"专职网格员@{A}/**", "越界", client_msg_id=old_seat["client_msg_id"])
            out = await call(p2, "water", "POST", "/api/v1/notices", outside)
            assert out.status_code == 403 and out.json()["error"]["code"] == "out_of_scope", out.text

            # Nothing addressed to A reaches them (they are not in its frozen audience); B's does.
            after_a = await send("mayor", _notice(mayor["position"], f"水务负责人@{A}", "甲县水务二"))
            # A's seat is vacant now: whoever stands in for it gets the notice, not the transferred person.
            stand_ins = await pending_persons("mayor", after_a["notice_id"], A)
            assert len(stand_ins) == after_a["persons"] and water["person"] not in stand_ins
            head_a = seed["head_a"]["position"]
            after_workers_a = await send("head_a", _notice(head_a, f"专职网格员@{A}/**", "甲县网格二"))
            assert after_workers_a["positions"] == 2  # W's township left A with its grids
            assert w["person"] not in await pending_persons("head_a", after_workers_a["notice_id"], A)
            to_b = await send("mayor", _notice(mayor["position"], f"水务负责人@{B}", "乙县水务"))
            workers_b = await send("head_b", _notice(seed["head_b"]["position"], f"专职网格员@{B}/**", "乙县网格"))
            assert workers_b["positions"] == 6
            # The same client_msg_id as the refused sends: stored now for the first time (201, not a duplicate).
            mine = await send("water", {**outside, "selector": f"专职网格员@{B}/**", "title": "新岗位"})
            assert mine["duplicate"] is False and mine["positions"] == 6
            [label] = (await _got(p_water, to_b["notice_id"]))["data"]["positions"]
            assert label["position_id"] == seed["water_b"]
            await _got(p_w, workers_b["notice_id"])
            await _got(p_w, mine["notice_id"])
        finally:
            for c in (p_water, p_w, m):
                await c.close()


async def test_s21d_a_retired_position_gets_no_further_deliveries(
    own_pg_database: str, redis_url: str, tmp_path: Path
) -> None:
    seed = await _seed(own_pg_database, tmp_path)
    q, head = seed["q"], seed["head_a"]
    async with zzd_processes(own_pg_database, redis_url, 2) as (p1, p2), httpx.AsyncClient() as h:
        tok = {k: (await login(p2.http, v["login"]))["access_token"] for k, v in seed.items() if isinstance(v, dict)}
        tok["admin"] = (await login(p1.http, seed["admin"]))["access_token"]

        call = _caller(h, tok)

        c_q = await Client.connect(p2.ws, tok["q"])
        c_w = await Client.connect(p2.ws, tok["w"])
        c_head = await Client.connect(p2.ws, tok["head_a"])
        try:
            urgent = _notice(head["position"], f"专职网格员@{A}/**", "防汛", priority="urgent", ack_required=True)
            r = await call(p2, "head_a", "POST", "/api/v1/notices", urgent)
            assert r.status_code == 201, r.text
            nid = int(r.json()["notice_id"])
            audience = r.json()
            assert (audience["positions"], audience["persons"]) == (4, 2)  # W and Q; the other two seats vacant
            await _got(c_q, nid)

            # Mid-stream: Q's position is retired on process 1.
            r = await call(p1, "admin", "POST", f"/api/v1/org/positions/{q['position']}/retire", {})
            assert r.status_code == 200, r.text

            async def gone_on_p2() -> bool:
                pv = await call(p2, "head_a", "POST", "/api/v1/notices/preview",
                                {"as_position": head["position"], "selector": f"专职网格员@{Q_GRID}"})  # fmt: skip
                return pv.status_code == 200 and pv.json()["positions"] == 0

            await wait_until(gone_on_p2, BAR, "process 2 to drop the retired position within 5 s")

            # A reminder of the open notice reaches the others who owe it, not Q (W and Q both owe an ack).
            r = await call(p2, "head_a", "POST", f"/api/v1/notices/{nid}/remind", {"unit": A, "missing": "ack"})
            assert r.status_code == 200, r.text
            assert r.json()["reminded"] == 1, r.text
            await _got(c_w, nid, "notice.remind")
            # The reminder's events commit with its answer, so after a later message Q would have it.
            await _sentinel(c_head, c_q, q["person"])
            assert nid not in _notice_ids(c_q, "notice.remind")
            # A new notice to the same selector leaves Q's retired position out of its audience.
            again = _notice(head["position"], f"专职网格员@{A}/**", "二次")
            r = await call(p2, "head_a", "POST", "/api/v1/notices", again)
            assert r.status_code == 201, r.text
            second = r.json()
            assert (second["positions"], second["persons"]) == (audience["positions"] - 1, audience["persons"] - 1)
            await _got(c_w, second["notice_id"])

            # The first notice keeps its frozen audience: Q's receipt is still counted.
            progress = await call(p2, "head_a", "GET", f"/api/v1/notices/{nid}/progress")
            assert progress.status_code == 200, progress.text
            assert progress.json()["notice_total"]["receipts"] == audience["receipts"], progress.text
        finally:
            for c in (c_q, c_w, c_head):
                await c.close()
