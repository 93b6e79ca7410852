"""Two handovers of one position at once (广西 audit, two ``zzd serve`` processes on PostgreSQL).

Before: each handover took its time and its answer's ``previous_holders`` before waiting for the
org version lock, and moved the unread notices owed through the position after its commit, from
the holder it had read then. The one that committed second named the predecessor both had seen
(not the holder it replaced), its ``unread_notices_moved`` was 0, the notice stayed owed by the
holder it had just replaced, and the replaced holder's assignment could end before it started.

The race is made certain here, not likely: the test holds the ``org_version`` row lock itself while
both requests arrive and wait for it, then lets them through one after the other.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from kernel.db.database import Database
from org_tree.jurisdiction import SYSTEM
from tests.client import login, new_person
from tests.org_server import auth, org_serving, seat
from tests.waiting import wait_until

GRID = "990101001001001"

pytestmark = pytest.mark.postgres


async def _waiting(db: Database, n: int) -> bool:
    """Whether ``n`` org writes wait for the ``org_version`` row lock the test holds."""
    q = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
         " AND query ILIKE '%org_version%'")  # fmt: skip
    async with db.read() as conn:
        return int((await conn.execute(text(q))).scalar_one()) >= n


async def test_the_second_of_two_handovers_at_once_replaces_the_first_and_takes_its_notices(
    own_pg_database: str, tmp_path: Path
) -> None:
    async with org_serving(own_pg_database, tmp_path) as rs:
        s = rs.services_obj  # type: ignore[attr-defined]
        pred, _, pos, _ = await seat(rs, GRID, "grid_worker")
        _, _, head_pos, head_tok = await seat(rs, "990101", "county_head")
        first, _ = await new_person(s)
        second, _ = await new_person(s)
        admin_id, admin_login = await new_person(s)
        await s.grants.grant(SYSTEM, admin_id, "990101", frozenset({"assignments"}))
        admin_tok = (await login(rs.http, admin_login))["access_token"]
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(head_tok)) as head:
            sent = await head.post("/api/v1/notices", json={"as_position": head_pos, "selector": f"pos:{pos}",
                                                            "client_msg_id": "race-1", "title": "请上报"})  # fmt: skip
            assert sent.status_code == 201, sent.text
            notice = sent.json()["notice_id"]

        async with Database(own_pg_database) as db, httpx.AsyncClient(base_url=rs.http, headers=auth(admin_tok)) as h:

            async def hand(to: int) -> httpx.Response:
                return await h.post(f"/api/v1/org/positions/{pos}/handover", json={"person_id": to})

            async with db.write() as conn:
                await conn.execute(text("SELECT version FROM org_version FOR UPDATE"))
                to_first = asyncio.create_task(hand(first))
                await wait_until(lambda: _waiting(db, 1), what="the first handover waiting for the lock")
                to_second = asyncio.create_task(hand(second))
                await wait_until(lambda: _waiting(db, 2), what="both handovers waiting for the lock")
            # The lock is let go: they commit one after the other.
            answers = {first: await to_first, second: await to_second}

        for r in answers.values():
            assert r.status_code == 200, r.text
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(admin_tok)) as h:
            view = (await h.get(f"/api/v1/org/positions/{pos}")).json()
            history = (await h.get(f"/api/v1/org/positions/{pos}/history")).json()["assignments"]
        [now_holder] = view["holders"]
        replaced = first if now_holder == second else second
        # Each answer names whom it replaced: the earlier one the predecessor, the later one the earlier one.
        assert answers[replaced].json()["previous_holders"] == [pred]
        assert answers[now_holder].json()["previous_holders"] == [replaced]
        assert answers[now_holder].json()["unread_notices_moved"] == 1
        # No period ends before it starts: the replaced holder held it from one commit to the next.
        assert all(a["end_at"] is None or a["end_at"] >= a["start_at"] for a in history), history
        # The notice is owed by whoever holds the position now, not by a holder it passed through.
        async with httpx.AsyncClient(base_url=rs.http, headers=auth(head_tok)) as head:
            r = await head.get(f"/api/v1/notices/{notice}/pending", params={"unit": GRID})
            assert r.status_code == 200, r.text
            assert [i["person_id"] for i in r.json()["items"]] == [now_holder]
