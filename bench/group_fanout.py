"""Group fan-out and handover (issue 5): a ~2,000-member unit group on two zzd processes.

Run:  .venv/bin/python bench/group_fanout.py [--townships 9] [--clients 1000] [--messages 5]
      [--thread-messages 10000] [--procs 2] [--logdir DIR] [--via post|frame|both]
      [--profile] [--zzd-env K=V[,K=V…] …]

Per run, on a fresh PostgreSQL database with Redis as the broker:
1. seed: a county of ``--townships`` townships × 15 villages × 3 grids
   (org_tree.importer) with synthetic holders (org_tree.synthetic, no
   vacancies); the county's unit group with depth 3 (every position holder of
   the county: ~2,000 members with 9 townships) is created by the reconciler;
   ``--clients`` members are drawn at random and get login sessions and tokens;
2. zzd: two ``zzd serve`` processes; the clients connect alternately to them;
   a member sends ``--messages`` messages one after another to the group
   (process 1) — by REST POST, by a ``send`` frame on its own WebSocket (the
   path chat clients use, docs/protocol.md), or, with ``--via both``, each
   message once by each path, alternately — and each recipient's socket
   records when that message's ``message.new`` arrived: per message and
   path, send → p50 / p99 / last delivery, and answer → delivery.
   ``--profile`` samples both zzd processes with py-spy while they send;
   each ``--zzd-env`` runs this step again with those extra settings (an
   experiment against the same seed and the same bare run);
3. baseline: the same clients connect to two bare ``websockets`` servers
   (bench/notice_bare.py, one broadcast per server) and a frame of the size of
   zzd's ``message.new`` is broadcast ``--messages`` times: trigger → p50 /
   p99 / last delivery. Ratio = bare / zzd (goal ≥ 0.7);
4. handover: a position thread with ``--thread-messages`` messages (bulk
   inserted) and, as the same-run baseline, one with a single message. The
   position is handed over by a separate process (the orchestrator, straight
   on the database, as any process would); then, through process 2, a citizen
   writes to the position and the successor's socket must receive it, and the
   successor reads the thread's first history page. Figures: handover start →
   commit, → the successor's first delivery, → the successor's history page
   (goal ≤ 1 s for 10,000 messages).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from group_load import GroupPool
from notice_bare import trigger
from notice_pyspy import Profile
from notice_setup import seed_sessions

from common import (
    BENCH,
    PYTHON,
    ROOT,
    Server,
    free_port,
    migrate,
    percentile,
    postgres_database,
    start_process,
    start_zzd,
    wait_ready,
    zzd_env,
)

sys.path.insert(0, str(ROOT))

REDIS_URL = "redis://127.0.0.1:6379/0"
GOAL_RATIO = 0.7
GOAL_HANDOVER_S = 1.0
COUNTY = "990101"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def prepare(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import insert, update
    from tests.notices.conftest import write_divisions

    from kernel.clock import SystemClock
    from kernel.db.database import Database
    from messaging.conversations.members import MemberReconciler
    from messaging.conversations.service import ConversationService
    from messaging.events import EventLog
    from messaging.schema import conversations, messages
    from messaging.unit_of_work import UnitOfWork
    from org_tree.holder import OrgIndexHolder
    from org_tree.importer import import_divisions
    from org_tree.jurisdiction import SYSTEM
    from org_tree.people import PersonDirectory
    from org_tree.synthetic import generate_people

    db = Database(url, statement_timeout_ms=600_000)
    out: dict[str, Any] = {}
    try:
        # One county of ``--townships`` × 15 villages (grids are added by the import).
        folder = write_divisions(Path(args.tmp) / "div", args.townships, counties=(COUNTY,))
        await import_divisions(db, folder, grids_per_village=3)
        await generate_people(db, seed=7, vacancy_rate=0.0, deputy_rate=0.0, pool_size=2)
        holder = OrgIndexHolder(db)
        idx = await holder.load()
        conv = ConversationService(UnitOfWork(db, EventLog(db), SystemClock(), lambda groups: None))
        rec = MemberReconciler(conv, lambda: holder.index)
        g = await rec.create_unit_group(SYSTEM, COUNTY, depth=3)
        members = sorted(m["person_id"] for m in g["members"])
        rng = random.Random(7)
        sender = members[0]
        recipients = rng.sample(members[1:], min(args.clients, len(members) - 1))
        out.update(group_id=g["id"], members=len(members))
        # Two single positions with one holder each, outside the sampled recipients.
        singles = []
        for k in idx.slots():
            hs = idx.primary_holders(k)
            if not idx.position_role(k).pool and len(hs) == 1 and hs[0] not in recipients and hs[0] != sender:
                singles.append((int(idx.position_id(k)), int(hs[0])))
            if len(singles) == 2:
                break
        people = PersonDirectory(db, SystemClock())
        threads: list[dict[str, Any]] = []
        for (pos, holder_id), n in zip(singles, (1, args.thread_messages), strict=True):
            citizen = (await people.create("群众")).id
            successor = (await people.create("接任者")).id
            cid = await conv.open_thread(citizen, pos)
            start = datetime.now(UTC) - timedelta(days=30)
            rows = [
                {
                    "conversation_id": cid,
                    "sender_id": citizen if i % 2 == 0 else holder_id,
                    "client_msg_id": f"seed-{cid}-{i}",
                    "body": f"历史消息 {i}",
                    "created_at": start + timedelta(seconds=i),
                    "kind": "text",
                    "sender_position_id": None if i % 2 == 0 else pos,
                }
                for i in range(n)
            ]
            async with db.write() as c:
                for i in range(0, len(rows), 5000):
                    await c.execute(insert(messages), rows[i : i + 5000])
                last = (await c.execute(messages.select().order_by(messages.c.id.desc()).limit(1))).one()
                await c.execute(update(conversations).where(conversations.c.id == cid).values(last_message_id=last.id))
            threads.append(
                {
                    "position": pos,
                    "holder": holder_id,
                    "citizen": citizen,
                    "successor": successor,
                    "conversation_id": cid,
                    "messages": n,
                }
            )
        tokens = await seed_sessions(
            db, [sender, *recipients, *(t[k] for t in threads for k in ("citizen", "successor", "holder"))]
        )
        out.update(sender=tokens[0], recipients=tokens[1 : 1 + len(recipients)], threads=threads)
        by_person = {c.person_id: c for c in tokens[1 + len(recipients) :]}
        for t in threads:
            for role in ("citizen", "successor", "holder"):
                t[f"{role}_token"] = by_person[t[role]].token
    finally:
        await db.dispose()
    return out


@contextlib.contextmanager
def running(servers: list[Server], ready_path: str) -> Any:
    try:
        for s in servers:
            wait_ready(s, ready_path, timeout=120)
        yield servers
    finally:
        for s in servers:
            s.stop()


def _stats(times: list[float], t0: float) -> dict[str, float]:
    lat = [t - t0 for t in times]
    return {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "last": max(lat) if lat else float("nan")}


def vias(via: str) -> list[str]:
    """The send paths measured in this run, in the order each message is sent by them."""
    return ["post", "frame"] if via == "both" else [via]


class PostSender:
    """``POST /api/v1/conversations/{id}/messages`` on one kept-alive HTTP connection (the REST path)."""

    def __init__(self, port: int, token: str, gid: int) -> None:
        self._h = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        self._token, self._gid = token, gid

    def send(self, key: str, body: str) -> tuple[float, float]:
        """Send one message; (sent, answered) times."""
        t0 = time.time()
        r = self._h.post(
            f"/api/v1/conversations/{self._gid}/messages",
            json={"client_msg_id": key, "body": body},
            headers={"authorization": f"Bearer {self._token}"},
        )
        t1 = time.time()
        if r.status_code != 201:
            raise RuntimeError(f"send failed: {r.status_code} {r.text[:300]}")
        return t0, t1

    def close(self) -> None:
        self._h.close()


class FrameSender:
    """A ``send`` frame on the sender's own authenticated WebSocket (docs/protocol.md: the chat clients' path)."""

    def __init__(self, url: str, token: str, gid: int) -> None:
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(connect(url, max_size=65_536, compression=None))
        self._ws.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": token}))
        hello = json.loads(self._ws.recv(timeout=30))
        if hello.get("type") != "ok":
            raise RuntimeError(f"hello refused: {hello}")
        self._gid = gid

    def send(self, key: str, body: str) -> tuple[float, float]:
        """Send one message; (sent, answered) times. The sender's own events on the socket are skipped."""
        frame = json.dumps(
            {"type": "send", "id": key, "conversation_id": self._gid, "client_msg_id": key, "body": body}
        )
        t0 = time.time()
        self._ws.send(frame)
        while True:
            reply = json.loads(self._ws.recv(timeout=60))
            if reply.get("ref") == key:
                break
        t1 = time.time()
        if reply.get("type") != "ok":
            raise RuntimeError(f"send failed: {reply}")
        return t0, t1

    def close(self) -> None:
        self._stack.close()


def run_zzd(
    env: dict[str, str],
    info: dict[str, Any],
    args: argparse.Namespace,
    logdir: Path,
    *,
    handovers: bool = True,
    tag: int = 0,
) -> dict[str, Any]:
    servers = [start_zzd(f"zzd_group_{i}", env, logdir) for i in range(2)]
    out: dict[str, Any] = {"per_message": []}
    with running(servers, "/readyz"):
        pool = GroupPool(info["recipients"], [s.url for s in servers], args.procs)
        try:
            got = sum(r["connected"] for r in pool.call("connect"))
            pool.call("listen")
            log(f"zzd: {got} recipients connected")
            out["connected"] = got
            time.sleep(1.0)
            gid = info["group_id"]
            body = "请各位同事注意查收本周防汛值班安排。" * 3
            senders: dict[str, PostSender | FrameSender | None] = {
                "post": PostSender(servers[0].port, info["sender"].token, gid),
                "frame": None,
            }
            if "frame" in vias(args.via):
                senders["frame"] = FrameSender(servers[0].url, info["sender"].token, gid)
            prof = Profile(f"group-send-{tag}", [s.proc.pid for s in servers], logdir) if args.profile else None
            try:
                for i in range(args.messages):
                    for via in vias(args.via):
                        sender = senders[via]
                        assert sender is not None
                        key = f"bench-{via}-{i}-{uuid.uuid4().hex[:8]}"
                        t0, t1 = sender.send(key, body)
                        res = pool.call("await_key", key=key, timeout=60.0)
                        times = [t for x in res for t in x["times"]]
                        st = _stats(times, t0)
                        after = _stats(times, t1)
                        st.update(
                            commit=t1 - t0,
                            after_p50=after["p50"],
                            after_p99=after["p99"],
                            after_last=after["last"],
                            delivered=len(times),
                            missing=sum(x["missing"] for x in res),
                        )
                        out["frame_len"] = max(x["frame_len"] for x in res)
                        out["per_message"].append(st)
                        out.setdefault(f"per_message_{via}", []).append(st)
                        log(f"zzd message {i} via {via}: {st}")
                        time.sleep(0.5)
            finally:
                for sender in senders.values():
                    if sender is not None:
                        sender.close()
                if prof is not None:
                    prof.stop()
                    out["profile"] = prof.top(30)
        finally:
            pool.shutdown()
        out["handover"] = [asyncio.run(handover(t, servers)) for t in info["threads"]] if handovers else []
    return out


async def handover(t: dict[str, Any], servers: list[Server]) -> dict[str, Any]:
    """Hand the position over from this (separate) process; time until process 2 routes to the successor."""
    from websockets.asyncio.client import connect

    from kernel.clock import SystemClock
    from kernel.db.database import Database
    from org_tree.holder import OrgIndexHolder
    from org_tree.jurisdiction import SYSTEM
    from org_tree.org_service import OrgService

    db = Database(os.environ["BENCH_DB_URL"])
    holder = OrgIndexHolder(db)
    await holder.load()
    org = OrgService(db, SystemClock(), holder)
    p2 = servers[1]
    http = f"http://127.0.0.1:{p2.port}"
    ws = await connect(p2.url, max_size=65_536, compression=None)
    await ws.send(json.dumps({"type": "hello", "id": "h", "v": 1, "token": t["successor_token"]}))
    await ws.recv()
    out: dict[str, Any] = {"messages": t["messages"]}
    try:
        async with httpx.AsyncClient(base_url=http, timeout=30) as h:
            t0 = time.time()
            await org.handover(SYSTEM, t["position"], t["successor"])
            out["commit"] = time.time() - t0
            key = f"after-{uuid.uuid4().hex[:8]}"
            r = await h.post(
                f"/api/v1/positions/{t['position']}/messages",
                json={"client_msg_id": key, "body": "交接后第一条"},
                headers={"authorization": f"Bearer {t['citizen_token']}"},
            )
            assert r.status_code == 201, r.text
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("kind") == "message.new" and frame["data"]["client_msg_id"] == key:
                    out["routed"] = time.time() - t0
                    break
            r = await h.get(
                f"/api/v1/conversations/{t['conversation_id']}/messages",
                params={"limit": 50},
                headers={"authorization": f"Bearer {t['successor_token']}"},
            )
            # The reconciler's handover note (a system message) may or may not have landed yet.
            texts = [m for m in r.json()["messages"] if m["kind"] == "text"] if r.status_code == 200 else []
            assert len(texts) == min(50, t["messages"] + 1), r.text[:300]
            out["history"] = time.time() - t0
            old = await h.get(
                f"/api/v1/conversations/{t['conversation_id']}/messages",
                params={"limit": 1},
                headers={"authorization": f"Bearer {t['holder_token']}"},
            )
            out["predecessor_sees_new"] = any(m["client_msg_id"] == key for m in old.json()["messages"])
    finally:
        await ws.close()
        await db.dispose()
    log(f"handover with {t['messages']} messages: {out}")
    return out


async def _pg_admin_on(url: str, sql: str) -> None:
    """Run one statement on the benchmark database (experiments with storage settings)."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def bare_frame(length: int, key: str) -> str:
    data = {"id": 1, "conversation_id": 1, "client_msg_id": key, "body": ""}
    base = json.dumps({"type": "event", "seq": 1, "kind": "message.new", "data": data}, ensure_ascii=False)
    data["body"] = "x" * max(0, length - len(base))
    return json.dumps({"type": "event", "seq": 1, "kind": "message.new", "data": data}, ensure_ascii=False)


def run_bare(info: dict[str, Any], args: argparse.Namespace, logdir: Path, frame_len: int) -> dict[str, Any]:
    servers = []
    for i in range(2):
        port = free_port()
        argv = [PYTHON, str(BENCH / "notice_bare.py"), "--port", str(port)]
        servers.append(start_process(f"group_bare_{i}", argv, dict(os.environ), port, logdir))
    out: dict[str, Any] = {"per_message": []}
    with running(servers, ""):
        pool = GroupPool(info["recipients"], [s.url for s in servers], args.procs)
        try:
            out["connected"] = sum(r["connected"] for r in pool.call("connect"))
            pool.call("listen")
            time.sleep(1.0)
            for i in range(args.messages):
                key = f"bare-{i}"
                t0 = asyncio.run(trigger([s.url for s in servers], bare_frame(frame_len, key)))
                res = pool.call("await_key", key=key, timeout=60.0)
                times = [t for x in res for t in x["times"]]
                st = _stats(times, t0)
                st.update(delivered=len(times))
                out["per_message"].append(st)
                log(f"bare message {i}: {st}")
        finally:
            pool.shutdown()
    return out


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report(info: dict[str, Any], z: dict[str, Any], bare: dict[str, Any], via: str) -> None:
    print()
    print(
        f"unit group: {info['members']} members; {z['connected']} recipients connected to 2 zzd processes "
        f"(bare: {bare['connected']}); {len(z['per_message'])} messages, frame {z['frame_len']} B"
    )
    for path in vias(via):
        rows = z[f"per_message_{path}"]
        print(f"\nsent by {'REST POST' if path == 'post' else 'WebSocket send frame'} ({len(rows)} messages)")
        print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}{'last ms':>10}")
        for label, res, keys in (
            ("zzd send→delivery", rows, ("p50", "p99", "last")),
            ("zzd answer→delivery", rows, ("after_p50", "after_p99", "after_last")),
            ("bare broadcast", bare["per_message"], ("p50", "p99", "last")),
        ):
            print(f"{label:24}" + "".join(f"{1000 * _median(res, k):>10.0f}" for k in keys))
        ratios = {k: _median(bare["per_message"], k) / _median(rows, k) for k in ("p50", "p99")}
        print(
            f"zzd send answered (committed): median {1000 * _median(rows, 'commit'):.0f} ms; "
            f"delivered {sum(r['delivered'] for r in rows)}, missing {sum(r['missing'] for r in rows)}"
        )
        verdict = "MET" if min(ratios.values()) >= GOAL_RATIO else "NOT MET"
        print(f"ratio bare/zzd: p50 {ratios['p50']:.2f}×, p99 {ratios['p99']:.2f}× (goal ≥ {GOAL_RATIO}×: {verdict})")
        push = {k: _median(bare["per_message"], k) / _median(rows, f"after_{k}") for k in ("p50", "p99")}
        print(f"push only (bare / zzd answer→delivery): p50 {push['p50']:.2f}×, p99 {push['p99']:.2f}×")
    print()
    if z.get("profile"):
        print(f"py-spy, both zzd processes while the messages were sent:\n{z['profile']}\n")
    for h in z["handover"]:
        ok = "MET" if h["routed"] <= GOAL_HANDOVER_S else "NOT MET"
        print(
            f"handover, thread of {h['messages']:>6} messages: commit {1000 * h['commit']:.0f} ms, "
            f"successor's first delivery via process 2 {1000 * h['routed']:.0f} ms, history page "
            f"{1000 * h['history']:.0f} ms; predecessor sees the new message: {h['predecessor_sees_new']} "
            f"(goal ≤ {GOAL_HANDOVER_S} s: {ok})"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--townships", type=int, default=9)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=5)
    ap.add_argument("--thread-messages", type=int, default=10_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--logdir", type=Path, default=None)
    ap.add_argument("--profile", action="store_true", help="py-spy both zzd processes while the messages are sent")
    ap.add_argument(
        "--zzd-env",
        action="append",
        metavar="K=V[,K=V…]",
        help="run zzd with these extra settings (repeat: each configuration in turn, same seed, one bare run)",
    )
    ap.add_argument(
        "--via",
        choices=("post", "frame", "both"),
        default="post",
        help="send path: REST POST, a WebSocket send frame (what chat clients use), or both alternately in one run",
    )
    ap.add_argument(
        "--streams-fillfactor",
        type=int,
        default=None,
        help="experiment: ALTER TABLE person_streams SET (fillfactor = N) before seeding (HOT stream bumps)",
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, postgres_database() as url:
        args.tmp = tmp
        logdir = args.logdir or Path(tmp)
        logdir.mkdir(parents=True, exist_ok=True)
        env = zzd_env(url, REDIS_URL)
        env.update(ZZD_DB_POOL_SIZE="20")
        os.environ["BENCH_DB_URL"] = url
        migrate(env)
        if args.streams_fillfactor is not None:
            ff = int(args.streams_fillfactor)
            asyncio.run(_pg_admin_on(url, f"ALTER TABLE person_streams SET (fillfactor = {ff})"))
            log(f"person_streams fillfactor {args.streams_fillfactor}")
        t = time.time()
        info = asyncio.run(prepare(url, args))
        log(f"seeded in {time.time() - t:.0f} s: group {info['group_id']} of {info['members']} members")
        runs = []
        for k, extra in enumerate(args.zzd_env or [""]):
            settings = dict(kv.split("=", 1) for kv in extra.split(",") if kv)
            log(f"zzd configuration {k}: {settings or 'as configured'}")
            runs.append((extra, run_zzd({**env, **settings}, info, args, logdir, handovers=k == 0, tag=k)))
        bare = run_bare(info, args, logdir, runs[0][1]["frame_len"])
        for extra, z in runs:
            if len(runs) > 1:
                print(f"\n=== zzd with {extra or 'its configured settings'}")
            report(info, z, bare, args.via)


if __name__ == "__main__":
    main()
