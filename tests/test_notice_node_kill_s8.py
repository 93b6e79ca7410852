"""S8: a server process killed mid-fan-out; the retried send yields exactly one complete notice.

The send is one transaction, so a kill leaves either nothing or the notice
with every receipt. The events are written after the commit (connected
recipients first, then a sweep under a lease), so a kill can also land in the
middle of those: the surviving process takes the lease over once it expires
and finishes the fan-out, writing no event twice. The client (as a real one
would) retries with the same client_msg_id on the surviving process;
recipients on the killed process reconnect there and resume from their last seq.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from kernel.clock import SystemClock
from kernel.db.database import Database
from messaging.notices.schema import notice_receipts, notices
from messaging.schema import person_events
from org_tree.holder import OrgIndexHolder
from org_tree.importer import import_divisions
from org_tree.index import OrgIndex
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from org_tree.selectors import parse_selector
from org_tree.synthetic import generate_people
from tests.client import Client
from tests.conftest import TEST_KEYS, temp_pg_database
from tests.notices.conftest import write_divisions
from tests.procs import zzd_processes
from tests.services import REDIS_URL, pg_url
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

SELECTOR = "专职网格员@9901/** | 兼职网格员@9901/**"
RUNS = 5
SAMPLE = 60  # connected recipients per run (half on each process)


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    with temp_pg_database("zzd_s8") as name:
        yield pg_url(name)


async def _prepare(url: str, tmp: Path) -> tuple[int, int, list[int], dict[int, int]]:
    """Tree, people, a seated mayor; returns sender, its position, recipients, receipts per person."""
    db = Database(url)
    try:
        await import_divisions(db, write_divisions(tmp / "div", townships=6, villages=20), grids_per_village=3)
        await generate_people(db, seed=5)
        holder = OrgIndexHolder(db)
        idx: OrgIndex = await holder.load()
        org = OrgService(db, SystemClock(), holder)
        from org_tree.people import PersonDirectory

        sender = await PersonDirectory(db, SystemClock()).create("市长")
        city = idx.unit("9901")
        mayor = next(idx.position_id(k) for k in idx.unit_slots(city) if idx.position_role(k).key == "mayor")
        await org.handover(SYSTEM, mayor, sender.id)
        aud = org.resolve(await org.actor(sender.id), mayor, parse_selector(SELECTOR))
        return sender.id, mayor, sorted(aud.by_person), {p: len(v) for p, v in aud.by_person.items()}
    finally:
        await db.dispose()


@pytest.mark.parametrize("inline", ["20000", "0"], ids=["receipts-in-send", "receipts-packed"])
async def test_kill_mid_fanout_then_retry_gives_one_complete_notice(fresh_pg: str, tmp_path: Path, inline: str) -> None:
    """With ``inline`` 0 the receipts are committed packed (as a province-wide notice's are) and
    written after the commit, so a kill can also land while they are being written."""
    sender, mayor, recipients, receipts_of = await _prepare(fresh_pg, tmp_path)
    rng = random.Random(8)
    db = Database(fresh_pg)
    env = {"ZZD_NOTICE_FANOUT_LEASE": "2", "ZZD_NOTICE_INLINE_RECEIPTS": inline}
    try:
        for run in range(RUNS):
            async with zzd_processes(fresh_pg, REDIS_URL, 2, **env) as (a, b):
                toks = await _mint(db, [sender, *recipients[:SAMPLE]])
                sample = recipients[:SAMPLE]
                on_a = [await Client.connect(a.ws, toks[p]) for p in sample[: SAMPLE // 2]]
                on_b = [await Client.connect(b.ws, toks[p]) for p in sample[SAMPLE // 2 :]]
                body = {
                    "as_position": mayor,
                    "selector": SELECTOR,
                    "client_msg_id": f"s8-{run}",
                    "title": f"第{run}次",
                }
                hdr = {"Authorization": f"Bearer {toks[sender]}"}
                async with httpx.AsyncClient(timeout=60) as h:
                    post = asyncio.create_task(h.post(f"{a.http}/api/v1/notices", json=body, headers=hdr))
                    await asyncio.sleep(rng.uniform(0, 0.5))  # the fault's random instant, not synchronisation
                    a.proc.kill()
                    await a.proc.wait()
                    try:
                        first = await post
                        first_id = first.json()["notice_id"] if first.status_code in (200, 201) else None
                    except httpx.HTTPError:
                        first_id = None
                    # The client retries on the surviving process with the same id.
                    retry = await h.post(f"{b.http}/api/v1/notices", json=body, headers=hdr)
                assert retry.status_code in (200, 201), retry.text
                nid = retry.json()["notice_id"]
                assert first_id in (None, nid)

                # Exactly one notice, with every receipt (packed ones: once they are written, below).
                async with db.read() as conn:
                    n = (
                        await conn.execute(
                            select(func.count()).select_from(notices).where(notices.c.client_msg_id == f"s8-{run}")
                        )
                    ).scalar_one()
                assert n == 1
                if inline != "0":
                    assert await _receipt_count(db, nid) == sum(receipts_of.values())

                # Recipients of the killed process resume on the survivor; everyone gets it exactly once.
                resumed = []
                for c, p in zip(on_a, sample[: SAMPLE // 2], strict=True):
                    await c.wait_closed(timeout=10)
                    last = c.events[-1]["seq"] if c.events else 0
                    c2 = await Client.connect(b.ws, toks[p], resume={"epoch": c.hello["epoch"], "since": last})
                    resumed.append((c, c2))
                for c, c2 in resumed:
                    # Resuming from seq 0 replays earlier runs' notices first; wait for this one.
                    got = _new_of(c.events, nid) + _new_of(c2.events, nid)
                    if not got:
                        got = await _wait_new(c2, nid)
                    assert len({e["seq"] for e in got}) == 1
                    await c2.close()
                for c in on_b:
                    got = await _wait_new(c, nid)
                    assert len({e["seq"] for e in got}) == 1
                    await c.close()

                # The fan-out finishes (taken over from the killed process if need be):
                # every receipt fanned out, and exactly one notice.new per recipient.
                await wait_until(partial(_fanout_done, db, nid), 30, f"notice {nid}'s fan-out to finish")
                async with db.read() as conn:
                    left = (
                        await conn.execute(
                            select(func.count())
                            .select_from(notice_receipts)
                            .where(notice_receipts.c.notice_id == nid, notice_receipts.c.fanned_out.is_(False))
                        )
                    ).scalar_one()
                    per_person = (
                        await conn.execute(
                            select(person_events.c.person_id, func.count())
                            .where(
                                person_events.c.kind == "notice.new",
                                person_events.c.payload.like(f'{{"notice_id":{nid},%'),
                            )
                            .group_by(person_events.c.person_id)
                        )
                    ).all()
                assert left == 0
                assert await _receipt_count(db, nid) == sum(receipts_of.values())
                assert sorted(int(p) for p, _ in per_person) == recipients
                assert {int(n) for _, n in per_person} == {1}
    finally:
        await db.dispose()


async def _receipt_count(db: Database, notice_id: int) -> int:
    async with db.read() as conn:
        r = notice_receipts.c
        return int(
            (
                await conn.execute(select(func.count()).select_from(notice_receipts).where(r.notice_id == notice_id))
            ).scalar_one()
        )


def _new_of(events: list[dict[str, Any]], nid: int) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == "notice.new" and e["data"]["notice_id"] == nid]


async def _wait_new(c: Client, nid: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The client's ``notice.new`` events of notice ``nid``, waiting for the first one."""
    while not _new_of(c.events, nid):
        await c.wait_events(len(c.events) + 1, timeout=timeout)
    return _new_of(c.events, nid)


async def _fanout_done(db: Database, notice_id: int) -> bool:
    async with db.read() as conn:
        done = (await conn.execute(select(notices.c.fanout_done_at).where(notices.c.id == notice_id))).scalar_one()
    return done is not None


async def _mint(db: Database, persons: list[int]) -> dict[int, str]:
    """Open a session per person and sign its token with the test key (no passwords needed)."""
    from datetime import timedelta

    from kernel.sessions import SessionStore
    from zzd.auth.tokens import TokenService

    kid, secret = TEST_KEYS.split(":", 1)
    clock = SystemClock()
    sessions = SessionStore(db, clock, refresh_ttl=timedelta(days=1))
    tokens = TokenService(
        {kid: secret.encode()}, issuer="zzd", audience="zzd-clients", ttl=timedelta(hours=1), leeway=10, clock=clock
    )
    out = {}
    for p in persons:
        issued = await sessions.open(p)
        out[p] = tokens.issue(p, issued.session_id)
    return out
