"""Two server processes on one PostgreSQL, with Redis carrying only wake-ups."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from kernel.clock import SystemClock
from kernel.db.database import Database
from org_tree.grant_service import GrantService
from org_tree.holder import OrgIndexHolder
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from tests.client import PASSWORD, Client, connect_as, login
from tests.conftest import FAST_PASSWORDS
from tests.history import History
from tests.procs import zzd_processes
from tests.services import redis_prefix
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


async def _people(db_url: str, n: int) -> list[tuple[int, str]]:
    db = Database(db_url)
    try:
        d = PersonDirectory(db, SystemClock())
        out = []
        for i in range(n):
            lg = f"p{secrets.token_hex(5)}"
            p = await d.create(f"人{i}", login=lg, password_hash=FAST_PASSWORDS.hash_sync(PASSWORD))
            out.append((p.id, lg))
        return out
    finally:
        await db.dispose()


async def test_cross_process_delivery_idempotency_and_resume(pg_database: str, redis_url: str) -> None:
    (a_id, a_lg), (b_id, b_lg) = await _people(pg_database, 2)
    async with zzd_processes(pg_database, redis_url, 2) as (p1, p2):
        tok_a = (await login(p1.http, a_lg))["access_token"]
        tok_b = (await login(p2.http, b_lg))["access_token"]
        a = await Client.connect(p1.ws, tok_a)
        a_on_2 = await Client.connect(p2.ws, tok_a)  # A's second device on the other process
        b = await Client.connect(p2.ws, tok_b)
        hist = History()

        r = await a.send_message(b_id, "跨进程", client_msg_id="x1")
        hist.send_ok(a_id, "x1", r["data"]["message_id"], {a_id, b_id})
        [ev] = await b.wait_events(1)
        assert ev["data"]["body"] == "跨进程"
        await a_on_2.wait_events(1)  # the sender's other device, on process 2

        # The same client_msg_id from two devices on two processes at once: one message.
        r1, r2 = await asyncio.gather(
            a.send_message(b_id, "dup", client_msg_id="x2"), a_on_2.send_message(b_id, "dup", client_msg_id="x2")
        )
        assert r1["data"]["message_id"] == r2["data"]["message_id"]
        hist.send_ok(a_id, "x2", r1["data"]["message_id"], {a_id, b_id})

        # B goes offline; A keeps writing through process 1; B resumes on process 1.
        await b.wait_events(2)
        epoch, last = b.hello["epoch"], b.events[-1]["seq"]
        hist.deliver_events(b_id, b.events)
        await b.close()
        for i in range(25):
            r = await a.send_message(b_id, f"while away {i}", client_msg_id=f"y{i}")
            hist.send_ok(a_id, f"y{i}", r["data"]["message_id"], {a_id, b_id})
        b2 = await Client.connect(p1.ws, tok_b, resume={"epoch": epoch, "since": last})
        assert b2.hello["resumed"] is True
        hist.deliver_events(b_id, await b2.wait_events(25))
        hist.deliver_events(a_id, await a_on_2.wait_events(27))
        hist.check()
        for c in (a, a_on_2, b2):
            await c.close()


async def test_lost_wakeups_are_repaired_by_the_safety_poll(pg_database: str, redis_url: str) -> None:
    """Processes on different Redis prefixes never hear each other: only the database connects them."""
    (a_id, a_lg), (b_id, b_lg) = await _people(pg_database, 2)
    async with zzd_processes(
        pg_database,
        redis_url,
        2,
        prefixes=["iso-a-" + secrets.token_hex(3), "iso-b-" + secrets.token_hex(3)],
        ZZD_SAFETY_POLL_INTERVAL="0.5",
    ) as (p1, p2):
        a = await connect_as(p1, a_lg)
        b = await connect_as(p2, b_lg)
        sent = [(await a.send_message(b_id, f"m{i}"))["data"]["message_id"] for i in range(5)]
        evs = await b.wait_events(5, timeout=10)
        assert [e["data"]["id"] for e in evs] == sent
        assert [e["seq"] for e in evs] == [1, 2, 3, 4, 5]
        await a.close()
        await b.close()


async def test_org_change_through_one_process_reaches_the_other_within_a_second(
    own_pg_database: str, redis_url: str, tmp_path: Path
) -> None:
    pg_database = own_pg_database  # the tree import must not upsert over other tests' units
    from org_tree.importer import import_divisions
    from tests.notices.conftest import write_divisions

    db = Database(pg_database)
    try:
        await import_divisions(db, write_divisions(tmp_path / "div", townships=1, villages=2), grids_per_village=1)
    finally:
        await db.dispose()
    (admin_id, admin_lg), (heir_id, _) = await _people(pg_database, 2)
    db = Database(pg_database)
    try:  # the first administrator, as `zzd admin grant` makes one
        holder = OrgIndexHolder(db)
        await holder.load()
        org = OrgService(db, SystemClock(), holder)
        await GrantService(db, SystemClock(), holder, org).grant(SYSTEM, admin_id, None, frozenset({"assignments"}))
    finally:
        await db.dispose()
    async with zzd_processes(pg_database, redis_url, 2) as (p1, p2):
        tok1 = (await login(p1.http, admin_lg))["access_token"]
        tok2 = (await login(p2.http, admin_lg))["access_token"]
        hdr1, hdr2 = {"Authorization": f"Bearer {tok1}"}, {"Authorization": f"Bearer {tok2}"}
        async with httpx.AsyncClient() as h:
            unit = (await h.get(f"{p2.http}/api/v1/org/units/990101001001", headers=hdr2)).json()
            position = unit["position_ids"][0]
            r = await h.post(
                f"{p1.http}/api/v1/org/positions/{position}/handover", json={"person_id": heir_id}, headers=hdr1
            )
            assert r.status_code == 200, r.text

            async def routed_to_heir() -> bool:
                seen = (await h.get(f"{p2.http}/api/v1/org/positions/{position}", headers=hdr2)).json()
                return heir_id in seen["holders"]

            await wait_until(routed_to_heir, 1.0, "process 2 to route with the new holder within 1 s", interval=0.05)


async def test_sign_in_throttling_is_shared_by_the_processes_through_redis(pg_database: str, redis_url: str) -> None:
    """Issue 10 item 4: guesses spread over two processes count against one per-login limit."""
    ((_, victim),) = await _people(pg_database, 1)
    async with zzd_processes(pg_database, redis_url, 2, ZZD_LOGIN_LIMIT_PER_LOGIN="4/minute") as (p1, p2):
        codes = []
        async with httpx.AsyncClient() as h:
            for i in range(6):
                base = (p1, p2)[i % 2].http
                r = await h.post(
                    f"{base}/api/v1/auth/token", json={"grant_type": "password", "login": victim, "password": "x"}
                )
                codes.append(r.status_code)
        assert codes == [401, 401, 401, 401, 429, 429], codes
        assert int(r.headers["Retry-After"]) >= 1


async def test_socket_cap_holds_across_processes(pg_database: str, redis_url: str) -> None:
    """Issue 10: two sockets allowed per person; a third on the other process replaces the oldest."""
    [(pid, lg)] = await _people(pg_database, 1)
    prefix = redis_prefix()
    redis = aioredis.Redis.from_url(redis_url)
    async with zzd_processes(
        pg_database, redis_url, 2, prefixes=[prefix, prefix], ZZD_MAX_CONNECTIONS_PER_PERSON="2"
    ) as (p1, p2):
        tok = (await login(p1.http, lg))["access_token"]
        first = await Client.connect(p1.ws, tok)
        second = await Client.connect(p1.ws, tok)
        third = await Client.connect(p2.ws, tok)
        code, _ = await first.wait_closed()
        assert code == 4509
        # The survivors still work: a fourth, back on process 1, pushes out the second.
        fourth = await Client.connect(p1.ws, tok)
        code, _ = await second.wait_closed()
        assert code == 4509
        assert third.closed is None and fourth.closed is None
        # A socket that closed by itself gives its slot back: a fifth replaces nobody but the oldest left.
        await fourth.close()

        async def slot_released() -> bool:  # the server releases the slot in its teardown
            return int(await redis.zcard(f"{prefix}:sockets:{pid}")) == 1

        await wait_until(slot_released, what="the closed socket's slot to be released")
        fifth = await Client.connect(p2.ws, tok)
        sixth = await Client.connect(p2.ws, tok)
        code, _ = await third.wait_closed()
        assert code == 4509
        assert fifth.closed is None and sixth.closed is None
        for c in (fifth, sixth):
            await c.close()
    await redis.aclose()


async def test_signing_out_a_session_through_one_process_closes_its_socket_on_the_other(
    pg_database: str, redis_url: str
) -> None:
    """``DELETE /api/v1/auth/sessions/{id}`` on process 1 closes that session's socket on process 2 with 4503
    within a second: the announcement did it (the safety poll is a minute here), as a logout's does."""
    [(_, lg)] = await _people(pg_database, 1)
    async with zzd_processes(pg_database, redis_url, 2, ZZD_SAFETY_POLL_INTERVAL="60") as (p1, p2):
        phone, desk = await login(p2.http, lg), await login(p1.http, lg)
        lost = await Client.connect(p2.ws, phone["access_token"])
        kept = await Client.connect(p2.ws, desk["access_token"])
        async with httpx.AsyncClient(
            base_url=p1.http, headers={"Authorization": f"Bearer {desk['access_token']}"}
        ) as h:
            [current, other] = (await h.get("/api/v1/auth/sessions")).json()["sessions"]
            assert current["current"] and not other["current"]
            r = await h.delete(f"/api/v1/auth/sessions/{other['id']}")
            assert r.status_code == 200, r.text
        assert (await lost.wait_closed(timeout=1))[0] == 4503
        assert (await kept.request({"type": "ping"}))["type"] == "ok"
        for c in (lost, kept):
            await c.close()
