"""S3 at test scale: one notice to every grid-level position of a city, 1,000 recipients online.

Online recipients each hold two sockets and acknowledge three times across
them; the acknowledged count must equal the online recipients' receipts
exactly, the sender's "not acknowledged" list must be exactly the offline
ones, offline recipients get the notice when they next connect, and nobody
else can acknowledge it.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kernel.db.database import Database
from messaging.notices.schema import notices
from messaging.schema import person_events
from org_tree.jurisdiction import SYSTEM
from org_tree.selectors import parse_selector
from tests.client import Client, new_person
from tests.conftest import make_settings, start_server
from tests.org_server import populate
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ADMIN = SYSTEM
SELECTOR = "网格长@9901/** | 专职网格员@9901/** | 兼职网格员@9901/**"
ONLINE = 1_000


async def _token(s: object, person_id: int) -> str:
    issued = await s.sessions.open(person_id)  # type: ignore[attr-defined]
    return str(s.tokens.issue(person_id, issued.session_id))  # type: ignore[attr-defined]


async def _fanout_done(db: Database, notice_id: int) -> bool:
    async with db.read() as conn:
        done = (await conn.execute(select(notices.c.fanout_done_at).where(notices.c.id == notice_id))).scalar_one()
    return done is not None


async def _new_events_per_person(db: Database, persons: list[int], notice_id: int) -> dict[int, int]:
    """How many ``notice.new`` of ``notice_id`` each person's stream holds."""
    e = person_events.c
    async with db.read() as conn:
        rows = await conn.execute(
            select(e.person_id, e.payload).where(e.person_id.in_(persons), e.kind == "notice.new")
        )
        found = [int(p) for p, payload in rows if json.loads(payload)["notice_id"] == notice_id]
    return dict(Counter(found))


async def test_city_wide_notice_with_exact_receipts(own_db_url: str, tmp_path: Path) -> None:
    db_url = own_db_url
    await populate(db_url, tmp_path, townships=10, villages=25, grids=3, seed=11)
    rs, task = await start_server(
        make_settings(db_url, background_interval=0.2, max_connections_per_person=5, db_pool_size=10)
    )
    clients: list[Client] = []
    try:
        s = rs.services_obj  # type: ignore[attr-defined]
        idx = s.org_index.index
        city = idx.unit("9901")
        mayor_pos = next(idx.position_id(k) for k in idx.unit_slots(city) if idx.position_role(k).key == "mayor")
        sender_id, _ = await new_person(s, "市长")
        await s.org.handover(ADMIN, mayor_pos, sender_id)
        audience = s.org.resolve(await s.org.actor(sender_id), mayor_pos, parse_selector(SELECTOR))
        by_person = audience.by_person
        assert len(audience.positions) >= 4_000
        recipients = sorted(by_person)
        online, offline = recipients[:ONLINE], recipients[ONLINE:]

        async def connect_twice(pid: int) -> tuple[Client, Client]:
            tok = await _token(s, pid)
            return await Client.connect(rs.ws, tok), await Client.connect(rs.ws, tok)

        pairs: list[tuple[Client, Client]] = []
        for start in range(0, ONLINE, 50):  # 100 handshakes at a time: headroom on a loaded machine
            pairs += await asyncio.gather(*(connect_twice(p) for p in online[start : start + 50]))
        clients = [c for pair in pairs for c in pair]

        sender_tok = await _token(s, sender_id)
        async with httpx.AsyncClient(base_url=rs.http, headers={"Authorization": f"Bearer {sender_tok}"}) as h:
            r = await h.post(
                "/api/v1/notices",
                json={
                    "as_position": mayor_pos,
                    "selector": SELECTOR,
                    "client_msg_id": "s3",
                    "title": "全市网格员注意",
                    "priority": "urgent",
                    "ack_required": True,
                },
                timeout=60,
            )
            assert r.status_code == 201, r.text
            nid = r.json()["notice_id"]
            total_receipts = r.json()["receipts"]
            assert total_receipts == sum(len(v) for v in by_person.values())

            # Every online socket gets the notice.new, labelled with all the person's positions.
            def new_of_this(e: dict[str, Any]) -> bool:
                return bool(e["kind"] == "notice.new" and e["data"]["notice_id"] == nid)

            for (c1, c2), pid in zip(pairs, online, strict=True):
                for c in (c1, c2):
                    [ev, *_] = await c.wait_matching(new_of_this, timeout=60)
                    assert sorted(p["position_id"] for p in ev["data"]["positions"]) == sorted(by_person[pid])

            # Each online recipient acknowledges three times over its two sockets, all at once.
            async def ack3(pair: tuple[Client, Client]) -> None:
                c1, c2 = pair
                replies = await asyncio.gather(
                    c1.request({"type": "notice_ack", "notice_id": nid}),
                    c2.request({"type": "notice_ack", "notice_id": nid}),
                    c1.request({"type": "notice_ack", "notice_id": nid, "reply": "again"}),
                )
                assert all(x["type"] == "ok" for x in replies), replies

            for start in range(0, ONLINE, 100):
                await asyncio.gather(*(ack3(p) for p in pairs[start : start + 100]))

            online_receipts = sum(len(by_person[p]) for p in online)
            prog = (await h.get(f"/api/v1/notices/{nid}/progress", params={"unit": "9901"})).json()
            assert prog["total"]["receipts"] == total_receipts
            assert prog["total"]["acked"] == online_receipts  # exactly: duplicate acks changed nothing
            assert sum(c["acked"] for c in prog["by_child"]) == online_receipts  # rolled up per township

            # The sender's "not acknowledged" list is exactly the offline recipients.
            owed: set[int] = set()
            after = None
            while True:
                params = {"unit": "9901", "missing": "ack", "limit": "500", **({"after": str(after)} if after else {})}
                page = (await h.get(f"/api/v1/notices/{nid}/pending", params=params)).json()
                owed |= {item["person_id"] for item in page["items"]}
                after = page["next_after"]
                if after is None:
                    break
            assert owed == set(offline)

        # Exactly one notice.new each: checked once the fan-out is finished (nothing more is
        # written after that), in every online recipient's stream and on both of its sockets.
        await wait_until(partial(_fanout_done, s.db, nid), 60, f"notice {nid}'s fan-out to finish")
        assert await _new_events_per_person(s.db, online, nid) == dict.fromkeys(online, 1)
        for (c1, c2), pid in zip(pairs, online, strict=True):
            for c in (c1, c2):
                assert len(c.matching(new_of_this)) == 1, (pid, [e["kind"] for e in c.events])

        # Offline recipients get it on their next connection (resume from 0).
        for pid in offline[:5]:
            c = await Client.connect(rs.ws, await _token(s, pid), resume={"epoch": "-", "since": 0})
            evs = await c.wait_events(1, timeout=10)
            assert any(e["kind"] == "notice.new" and e["data"]["notice_id"] == nid for e in evs)
            await c.close()

        # A non-recipient cannot acknowledge (same answer as a missing notice).
        outsider, _ = await new_person(s)
        oc = await Client.connect(rs.ws, await _token(s, outsider))
        denied = await oc.request({"type": "notice_ack", "notice_id": nid})
        missing = await oc.request({"type": "notice_ack", "notice_id": nid + 999})
        assert denied["code"] == missing["code"] == "not_found"
        await oc.close()
    finally:
        for c in clients:
            await c.close()
        rs.server.should_exit = True
        await task
