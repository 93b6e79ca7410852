"""S7: the embedded SQLite default loses nothing it acknowledged when killed with SIGKILL."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest

from kernel.clock import SystemClock
from kernel.db.database import Database
from org_tree.people import PersonDirectory
from tests.client import PASSWORD, Client, login
from tests.conftest import FAST_PASSWORDS
from tests.procs import zzd_processes
from zzd.migrate import upgrade

pytestmark = pytest.mark.slow


async def test_acknowledged_messages_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    d = PersonDirectory(db, SystemClock())
    a = await d.create("甲", login="crash-a", password_hash=FAST_PASSWORDS.hash_sync(PASSWORD))
    b = await d.create("乙", login="crash-b", password_hash=FAST_PASSWORDS.hash_sync(PASSWORD))
    await db.dispose()
    acked: dict[str, int] = {}
    rng = random.Random(7)
    for round_no in range(4):
        kill_after = rng.randint(10, 60)
        async with zzd_processes(url, "memory://", 1, ZZD_SEND_RATE_PER_MINUTE="100000") as (p,):
            c = await Client.connect(p.ws, (await login(p.http, "crash-a"))["access_token"])
            stop = asyncio.Event()

            async def sender(
                worker: int,
                client: Client = c,
                stop: asyncio.Event = stop,
                rn: int = round_no,
                target: int = kill_after * (round_no + 1),
            ) -> None:
                k = 0
                while not stop.is_set():
                    cmid = f"r{rn}-w{worker}-{k}"
                    k += 1
                    try:
                        r = await client.send_message(b.id, f"payload {cmid}", client_msg_id=cmid)
                    except Exception:  # the server was killed under us: expected
                        return
                    if r["type"] == "ok":
                        acked[cmid] = r["data"]["message_id"]
                        if len(acked) >= target:
                            stop.set()

            workers = [asyncio.create_task(sender(w)) for w in range(4)]
            await asyncio.wait_for(stop.wait(), 30)
            p.proc.kill()  # SIGKILL with sends in flight
            await p.proc.wait()
            await asyncio.gather(*workers, return_exceptions=True)
            await c.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = dict(con.execute("SELECT client_msg_id, id FROM messages WHERE sender_id = ?", (a.id,)).fetchall())
    finally:
        con.close()
    missing = {k: v for k, v in acked.items() if rows.get(k) != v}
    assert not missing, f"acknowledged but lost after kill -9: {sorted(missing)[:10]}"
    assert len(acked) >= 40
