"""S12 and S13 for groups and position threads: two server processes on PostgreSQL, Redis for wake-ups.

S12: the same ``client_msg_id`` from two devices on two processes at once gives
one message (also when the first message to a position opens its thread).
S13: members write concurrently through both processes while a reader
reconnects and resumes on the other process; the history checker proves
I1–I3, and every reader sees each conversation's messages in one order, the
order of its history.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kernel.clock import SystemClock
from kernel.db.database import Database
from messaging.conversations.schema import message_fanouts
from messaging.schema import person_events
from org_tree.holder import OrgIndexHolder
from org_tree.org_service import OrgService
from tests.client import Client, connect_as, login
from tests.conftest import temp_pg_database
from tests.conversations.conftest import ADMIN
from tests.history import History
from tests.procs import ServerProcess, zzd_processes
from tests.services import pg_url
from tests.test_two_processes import _people
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def tree_pg(conv_pg_template: str) -> Iterator[str]:
    with temp_pg_database("zzd_conv_mp", template=conv_pg_template) as name:
        yield pg_url(name)


@pytest.fixture
async def two(tree_pg: str, redis_url: str) -> AsyncIterator[list[ServerProcess]]:
    async with zzd_processes(tree_pg, redis_url, 2) as procs:
        yield procs


async def _pool_with(db_url: str, holders: list[int]) -> int:
    """A pool position handed to ``holders`` (the first by handover, the rest assigned)."""
    db = Database(db_url)
    try:
        holder = OrgIndexHolder(db)
        idx = await holder.load()
        org = OrgService(db, SystemClock(), holder)
        pos = next(int(idx.position_id(k)) for k in idx.slots() if idx.position_role(k).pool)
        await org.handover(ADMIN, pos, holders[0])
        for h in holders[1:]:
            await org.assign(ADMIN, pos, h)
        return pos
    finally:
        await db.dispose()


def _order(events: list[dict[str, Any]], cid: int) -> list[int]:
    """Message ids of ``cid`` in stream order, once per seq."""
    by_seq = {e["seq"]: e for e in events}
    return [
        by_seq[s]["data"]["id"]
        for s in sorted(by_seq)
        if by_seq[s]["kind"] == "message.new" and by_seq[s]["data"]["conversation_id"] == cid
    ]


async def test_s12_same_key_from_two_processes_is_one_message(two: list[ServerProcess], tree_pg: str) -> None:
    p1, p2 = two
    (a, a_lg), (b, b_lg), (h1, h1_lg), (h2, h2_lg) = await _people(tree_pg, 4)
    pool = await _pool_with(tree_pg, [h1, h2])
    tok_a = (await login(p1.http, a_lg))["access_token"]
    a1, a2 = await Client.connect(p1.ws, tok_a), await Client.connect(p2.ws, tok_a)
    b1 = await connect_as(p2, b_lg)
    holders = [await connect_as(p, lg) for p, lg in ((p1, h1_lg), (p2, h2_lg))]
    hist = History()
    # The first message to a position, twice at once: one thread, one message.
    frame = {"type": "send", "to_position": pool, "client_msg_id": "first", "body": "求助"}
    r1, r2 = await asyncio.gather(a1.request(frame), a2.request(frame))
    assert r1["type"] == r2["type"] == "ok", (r1, r2)
    assert r1["data"]["message_id"] == r2["data"]["message_id"]
    assert r1["data"]["conversation_id"] == r2["data"]["conversation_id"]
    hist.send_ok(a, "first", r1["data"]["message_id"], {a, h1, h2})
    hist.send_ok(a, "first", r2["data"]["message_id"], {a, h1, h2})
    async with httpx.AsyncClient(base_url=p1.http) as h:
        r = await h.post(
            "/api/v1/groups",
            json={"title": "S12", "person_ids": [b]},
            headers={"Authorization": f"Bearer {tok_a}"},
        )
        gid = r.json()["id"]
    frame = {"type": "send", "conversation_id": gid, "client_msg_id": "g1", "body": "一次"}
    r1, r2 = await asyncio.gather(a1.request(frame), a2.request(frame))
    assert r1["data"]["message_id"] == r2["data"]["message_id"]
    assert {r1["data"]["duplicate"], r2["data"]["duplicate"]} == {True, False}
    hist.send_ok(a, "g1", r1["data"]["message_id"], {a, b})
    hist.send_ok(a, "g1", r2["data"]["message_id"], {a, b})
    # Each reader: the thread message (holders), the group's creation note and the message (b).
    for person, client, n in ((h1, holders[0], 1), (h2, holders[1], 1), (b, b1, 2)):
        hist.deliver_events(person, await client.wait_events(n))
    for client in (a1, a2):
        hist.deliver_events(a, await client.wait_events(3))
    hist.check()
    assert sum(1 for e in b1.events if e["kind"] == "message.new" and e["data"]["kind"] == "text") == 1
    for c in (a1, a2, b1, *holders):
        await c.close()


async def test_s13_order_under_concurrency_with_reconnects(two: list[ServerProcess], tree_pg: str) -> None:
    p1, p2 = two
    people = await _people(tree_pg, 5)
    (cit, cit_lg), (h1, h1_lg), (h2, h2_lg), (m1, m1_lg), (m2, m2_lg) = people
    pool = await _pool_with(tree_pg, [h1, h2])
    toks = {pid: (await login(p1.http, lg))["access_token"] for pid, lg in people}
    procs = {cit: p1, h1: p2, h2: p1, m1: p2, m2: p1}
    clients = {pid: await Client.connect(procs[pid].ws, toks[pid]) for pid in toks}
    async with httpx.AsyncClient(base_url=p2.http) as h:
        r = await h.post(
            "/api/v1/groups",
            json={"title": "S13", "person_ids": [m1, m2, h1]},
            headers={"Authorization": f"Bearer {toks[cit]}"},
        )
        gid = r.json()["id"]
    first = await clients[cit].request({"type": "send", "to_position": pool, "client_msg_id": "t0", "body": "开"})
    tid = first["data"]["conversation_id"]
    group_members, thread_members = {cit, m1, m2, h1}, {cit, h1, h2}
    hist = History()
    hist.send_ok(cit, "t0", first["data"]["message_id"], thread_members)
    sent_order: dict[int, list[int]] = {}
    n = 15

    async def writer(pid: int, cid: int, audience: set[int]) -> None:
        for i in range(n):
            key = f"{cid}-{pid}-{i}"
            r = await clients[pid].request(
                {"type": "send", "conversation_id": cid, "client_msg_id": key, "body": f"{pid}:{i}"}
            )
            assert r["type"] == "ok", r
            hist.send_ok(pid, key, r["data"]["message_id"], audience)
            sent_order.setdefault(pid * 10**9 + cid, []).append(r["data"]["message_id"])

    async def reconnect_reader() -> None:
        # m2 drops while the others write, then resumes on the other process.
        await clients[m2].wait_events(5)
        old = clients[m2]
        hist.deliver_events(m2, list(old.events))
        resume = {"epoch": old.hello["epoch"], "since": old.events[-1]["seq"]}
        await old.close()
        clients[m2] = await Client.connect(p2.ws, toks[m2], resume=resume)
        assert clients[m2].hello["resumed"] is True
        m2_before.extend(old.events)

    m2_before: list[dict[str, Any]] = []
    await asyncio.gather(
        writer(cit, gid, group_members),
        writer(m1, gid, group_members),
        writer(h1, gid, group_members),
        writer(h1, tid, thread_members),
        writer(h2, tid, thread_members),
        writer(cit, tid, thread_members),
        reconnect_reader(),
    )
    for pid, client in clients.items():
        want = {m for m, aud in hist.audience.items() if pid in aud}
        prior = m2_before if pid == m2 else []

        def arrived(client: Client = client, prior: list[dict[str, Any]] = prior, want: set[int] = want) -> bool:
            return want <= {e["data"]["id"] for e in _msgs(prior + client.events)}

        await wait_until(arrived, 20, f"all messages for {pid}")
        hist.deliver_events(pid, client.events)
    hist.check()
    # One order per conversation, the order of its history, for every reader.
    for cid, members in ((gid, group_members), (tid, thread_members)):
        async with httpx.AsyncClient(base_url=p1.http) as h:
            ids: list[int] = []
            before = None
            while True:
                params = {"limit": 100, **({"before": before} if before else {})}
                r = await h.get(
                    f"/api/v1/conversations/{cid}/messages",
                    params=params,
                    headers={"Authorization": f"Bearer {toks[cit]}"},
                )
                ids += [m["id"] for m in r.json()["messages"] if m["kind"] == "text"]
                before = r.json()["next_before"]
                if before is None:
                    break
        ids.reverse()
        for pid in members:
            events = (m2_before if pid == m2 else []) + clients[pid].events
            seen = [i for i in _order(events, cid) if i in set(ids)]
            assert seen == ids, f"{pid} saw conversation {cid} in another order"
    for key, mids in sent_order.items():
        assert mids == sorted(mids), f"sender order broken for {key}"
    for c in clients.values():
        await c.close()


def _msgs(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == "message.new"]


async def _big_group(server: ServerProcess, people: list[tuple[int, str]]) -> tuple[int, dict[int, str]]:
    """A group of all ``people`` created by the first through ``server``; returns it and seven tokens."""
    tok = {pid: (await login(server.http, lg))["access_token"] for pid, lg in people[:7]}
    async with httpx.AsyncClient(base_url=server.http) as h:
        r = await h.post(
            "/api/v1/groups",
            json={"title": "大群", "person_ids": [pid for pid, _ in people[1:]]},
            headers={"Authorization": f"Bearer {tok[people[0][0]]}"},
        )
        assert r.status_code == 201, r.text
    return int(r.json()["id"]), tok


async def _message_news(db_url: str, mid: int) -> list[int]:
    """The persons holding a ``message.new`` of message ``mid`` (once per event)."""
    db = Database(db_url)
    try:
        async with db.read() as conn:
            rows = await conn.execute(
                select(person_events.c.person_id, person_events.c.payload).where(person_events.c.kind == "message.new")
            )
            return [int(p) for p, pl in rows if json.loads(pl)["id"] == mid]
    finally:
        await db.dispose()


async def test_large_group_reaches_connected_members_of_both_processes_once(
    two: list[ServerProcess], tree_pg: str
) -> None:
    """A 70-member group: the send commits one message with the sending process's connected
    members' events; the other process writes and pushes its own connected members' events
    (control message); the sender's process sweeps the offline rest."""
    p1, p2 = two
    people = await _people(tree_pg, 70)
    gid, tok = await _big_group(p2, people)
    everyone = sorted(pid for pid, _ in people)
    sender = await Client.connect(p1.ws, tok[everyone[0]])
    others = list(tok)[1:]  # six members, three on each process
    connected = {pid: await Client.connect((p1, p2)[i % 2].ws, tok[pid]) for i, pid in enumerate(others)}
    r = await sender.request({"type": "send", "conversation_id": gid, "client_msg_id": "big1", "body": "全体注意"})
    assert r["type"] == "ok", r
    mid = r["data"]["message_id"]

    def is_it(e: dict[str, Any]) -> bool:
        return e["kind"] == "message.new" and e["data"]["id"] == mid

    for pid in others:
        await connected[pid].wait_matching(is_it)

    async def all_once() -> bool:
        got = await _message_news(tree_pg, mid)
        assert len(got) == len(set(got)), "a member got the message twice"
        return sorted(got) == everyone

    await wait_until(all_once, 20, "every member's message.new")
    assert all(len(c.matching(is_it)) == 1 for c in connected.values())
    for c in (sender, *connected.values()):
        await c.close()


async def test_large_group_sender_process_killed_before_its_sweep(tree_pg: str, redis_url: str) -> None:
    """The sending process dies after the commit, before sweeping offline members: the other
    process takes the lease over when it expires and writes each of them exactly one event."""
    env = {"ZZD_NOTICE_FANOUT_LEASE": "2", "ZZD_GROUP_FANOUT_SWEEP_AFTER": "600"}  # never sweeps in time
    people = await _people(tree_pg, 70)
    everyone = sorted(pid for pid, _ in people)
    async with zzd_processes(tree_pg, redis_url, 2, **env) as (p1, p2):
        gid, tok = await _big_group(p2, people)
        on_2 = {pid: await Client.connect(p2.ws, tok[pid]) for pid in list(tok)[1:4]}
        sender = await Client.connect(p1.ws, tok[everyone[0]])
        r = await sender.request({"type": "send", "conversation_id": gid, "client_msg_id": "k1", "body": "杀"})
        assert r["type"] == "ok", r
        mid = r["data"]["message_id"]
        for c in on_2.values():  # connected members of the surviving process: written and pushed at once
            await c.wait_matching(lambda e: e["kind"] == "message.new" and e["data"]["id"] == mid)
        assert sorted(await _message_news(tree_pg, mid)) == sorted([everyone[0], *on_2])  # nobody else yet
        p1.proc.kill()
        await p1.proc.wait()

        async def all_once() -> bool:
            got = await _message_news(tree_pg, mid)
            assert len(got) == len(set(got)), "a member got the message twice"
            return sorted(got) == everyone

        await wait_until(all_once, 20, "the survivor's sweep of the killed process's message")
        db = Database(tree_pg)
        try:
            async with db.read() as conn:
                left = (await conn.execute(select(message_fanouts.c.id).where(message_fanouts.c.id == mid))).first()
            assert left is None  # finished: the payload row is gone
        finally:
            await db.dispose()
        assert all(
            len(c.matching(lambda e: e["kind"] == "message.new" and e["data"]["id"] == mid)) == 1 for c in on_2.values()
        )
        for c in on_2.values():
            await c.close()
