"""Where a group send's time goes (issue 15 item 3): the send in process, phase by phase, and its row writes alone.

Run:  .venv/bin/python bench/group_send_split.py [--sends 15] [--connected 500] [--reps 12]

On a fresh PostgreSQL database seeded as ``bench/group_fanout.py`` seeds it (the
2,078-member unit group of a county with 9 townships):

1. ``--sends`` messages posted in process through ``ConversationService.post``
   with a ``GroupFanout`` whose "connected to this process" are ``--connected``
   members (as the sending process of the two in ``group_fanout.py``), each
   followed by its sweep; the send is timed whole and per phase by wrapping the
   functions it calls (access, members, pending rows, the claim before the
   connected members' events, the events' stream bump and rows). No HTTP, no
   sockets: what is left of ``group_fanout.py``'s "send answered" beyond this
   is the request, the event loop and the machine;
2. the send's per-member writes alone, each a transaction of its own (commit
   included), interleaved round by round so that load drifts hit all alike:
   an empty transaction; the stream bump of ``--connected`` persons; bump plus
   their event rows with a ``message.new``-sized payload and with a 7-byte
   payload; 1,578 pending rows (the members neither connected here nor the
   sender).

The first 3 sends are dropped (warm-up). Medians; run it next to
``group_fanout.py`` under the same locks and note the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from group_fanout import prepare

from common import ROOT, migrate, postgres_database, zzd_env

sys.path.insert(0, str(ROOT))

BODY = "请各位同事注意查收本周防汛值班安排。" * 3
WARMUP = 3


class _Local:
    """The sending process's sockets: these persons, nothing delivered."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def person_ids(self) -> list[int]:
        return list(self.ids)

    def deliver(self, groups: Any) -> None:
        pass


class _NoJobs:
    """The send's background jobs are not run (the bench sweeps each message itself)."""

    def soon(self, job: Awaitable[object], name: str) -> None:
        getattr(job, "close", lambda: None)()


Timed = Callable[..., Awaitable[Any]]


def _timed(times: dict[str, list[float]], label: str, f: Timed) -> Timed:
    async def wrapper(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return await f(*a, **k)
        finally:
            times[label].append(time.perf_counter() - t)

    return wrapper


async def sends(url: str, group_id: int, sender: int, n: int, connected: int) -> list[int]:
    """Post ``n`` messages in process; prints the phases. Returns the members connected "here"."""
    from sqlalchemy import select

    import messaging.events as ev_mod
    from kernel.clock import SystemClock
    from kernel.db.database import Database
    from messaging.broker.memory import MemoryBroker
    from messaging.conversations import fanout as fan_mod
    from messaging.conversations import service as svc_mod
    from messaging.conversations.model import PostRequest
    from messaging.events import EventLog
    from messaging.schema import conversation_members
    from messaging.unit_of_work import UnitOfWork

    db = Database(url, pool_size=5)
    times: dict[str, list[float]] = defaultdict(list)
    cm = conversation_members.c
    async with db.read() as c:
        members = sorted(int(r[0]) for r in await c.execute(select(cm.person_id).where(cm.conversation_id == group_id)))
    here = [m for m in members if m != sender][:connected]
    uow = UnitOfWork(db, EventLog(db), SystemClock(), lambda groups: None)
    relay = fan_mod.GroupRelay(uow)
    fanout = fan_mod.GroupFanout(relay, _Local(here), MemoryBroker(), _NoJobs(), node_id="split")  # type: ignore[arg-type]
    conv = svc_mod.ConversationService(uow, fanout=fanout)
    patched = [
        (svc_mod, "access", "access (conversation row locked, sender's membership)"),
        (svc_mod, "stored_members", "members and muted (one row)"),
        (svc_mod, "insert_pending", "pending rows, members not connected here"),
        (svc_mod, "flush", "claim before the connected members' events"),
        (svc_mod, "append_per_person", "connected members' events: bump + rows"),
        (ev_mod, "bulk_insert", "  of which the event rows"),
    ]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patched]
    for mod, name, label in patched:
        setattr(mod, name, _timed(times, label, getattr(mod, name)))
    total: list[float] = []
    try:
        for i in range(n):
            t = time.perf_counter()
            key = f"split-{i}-{uuid.uuid4().hex[:6]}"
            res = await conv.post(PostRequest(sender, key, BODY, conversation_id=group_id))
            total.append(time.perf_counter() - t)
            marks = {k: len(v) for k, v in times.items()}
            await relay.sweep(res.message_id)
            for k, v in times.items():  # the sweep's own writes are not the send's
                del v[marks.get(k, 0) :]
    finally:
        for mod, name, f in saved:
            setattr(mod, name, f)
        await db.dispose()
    print(f"\nthe send in process: {len(members)} members, {len(here)} connected here, {n} sends ({WARMUP} dropped)")
    whole = statistics.median(total[WARMUP:])
    print(f"  {'whole send (transaction, commit)':56}{1000 * whole:8.1f} ms")
    parts = 0.0
    for _, _, label in patched:
        v = statistics.median(times[label][WARMUP:]) if times[label][WARMUP:] else 0.0
        parts += 0.0 if label.startswith(" ") else v
        print(f"  {label:56}{1000 * v:8.1f} ms")
    rest = "the rest: sender, message row, payload row, commit, Python"
    print(f"  {rest:56}{1000 * (whole - parts):8.1f} ms")
    return here


async def writes(url: str, here: list[int], reps: int) -> None:
    """The send's per-member writes alone, each in a transaction of its own; interleaved rounds."""
    from kernel.db.database import Database
    from messaging.conversations.storage import insert_pending
    from messaging.events import _PG_BUMP, EventLog, driver_in_transaction

    db = Database(url, pool_size=3)
    events = EventLog(db)
    full = json.dumps({"body": BODY, "pad": "x" * 380}, ensure_ascii=False)
    tiny = '{"r":1}'
    offline = list(range(10**9, 10**9 + 1578))  # no foreign key on pending rows: ids of no one
    kinds = ("empty", "bump", "bump + event rows", "bump + event rows, tiny payload", "1,578 pending rows")
    out: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        for r in range(reps):
            for k in kinds:
                t = time.perf_counter()
                async with db.write() as conn:
                    driver = await driver_in_transaction(conn)
                    if k == "bump":
                        await driver.fetch(_PG_BUMP, here)
                    elif k.startswith("bump + "):
                        payload = tiny if "tiny" in k else full
                        await events.append_bulk(conn, "split", [(p, payload) for p in here], datetime.now(UTC))
                    elif k.startswith("1,578"):
                        await insert_pending(conn, 10**12, 10**12 + r, [(p, 0) for p in offline])
                out[k].append(time.perf_counter() - t)
    finally:
        await db.dispose()
    print(f"\nthe writes alone, one transaction each incl. commit ({reps} rounds; payload {len(full.encode())} B):")
    for k, v in out.items():
        print(f"  {k:56}{1000 * statistics.median(v):8.1f} ms  (min {1000 * min(v):.1f})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sends", type=int, default=15)
    ap.add_argument("--connected", type=int, default=500)
    ap.add_argument("--reps", type=int, default=12)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, postgres_database() as url:
        migrate(zzd_env(url))
        seed = argparse.Namespace(tmp=tmp, townships=9, clients=1000, thread_messages=1)
        info = asyncio.run(prepare(url, seed))
        here = asyncio.run(sends(url, info["group_id"], info["sender"].person_id, args.sends, args.connected))
        asyncio.run(writes(url, here, args.reps))


if __name__ == "__main__":
    main()
