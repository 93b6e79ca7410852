"""S6: PostgreSQL stopped, then restarted fast and immediate, under a steady stream of sends.

A private PostgreSQL cluster (initdb in a temporary directory, never the
shared server) sits under one zzd process. The client sends about 50
messages a second and, like a real client, retries an error with the same
``client_msg_id``. What must hold (docs/reliability.md S6):

- no send hangs: every request is answered within 5 s, during the outage with
  the retryable ``unavailable`` error;
- the server recovers by itself once the database is back (pool pre-ping),
  within 10 s, without a process restart;
- every acknowledged message is in the database exactly once, with the id it
  was acknowledged with, and the recipient receives each exactly once, in order.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from tests.client import Client, connect_as, new_person
from tests.conftest import free_port, make_settings, start_server
from tests.services import require
from tests.waiting import wait_until
from zzd.migrate import upgrade

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPLY_DEADLINE = 5.0  # S6: an explicit error within 5 s, never a hang
RECOVERY_DEADLINE = 10.0  # S6: serving again within 10 s of the database being up


class PrivatePostgres:
    """A PostgreSQL cluster of our own, driven with pg_ctl (run as ``postgres`` when we are root)."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"
        self.bin = _pg_bindir()
        self.opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        self.start()

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-o", self.opts, "-l", str(self.root / "log"), "-w", "start")

    def restart(self, mode: str) -> None:
        log = str(self.root / "log")
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-o", self.opts, "-l", log, "-w", "restart")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"


def _pg_bindir() -> Path:
    exe = shutil.which("pg_ctl")
    if exe is None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            pytest.fail("pg_ctl not found")
        exe = str(found[-1])
    return Path(exe).resolve().parent


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    require("postgres")  # the same machine that runs PostgreSQL has its binaries
    root = Path(tempfile.mkdtemp(prefix="zzd-s6-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    pg = PrivatePostgres(root, free_port())
    pg.init()
    try:
        yield pg
    finally:
        try:
            pg.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already down
        shutil.rmtree(root, ignore_errors=True)


class Sender:
    """Sends numbered messages at ~50/s, retrying each with its own client_msg_id until acknowledged."""

    def __init__(self, client: Client, to: int) -> None:
        self.client, self.to = client, to
        self.acked: dict[str, int] = {}  # client_msg_id -> message id of the ack
        self.order: list[str] = []
        self.errors: list[str] = []
        self.next = 0

    async def send_one(self) -> None:
        cid = f"s6-{self.next}"
        self.next += 1
        while True:
            # wait_for turns a hang into a test failure: S6 wants an answer, error or not, within 5 s.
            r = await asyncio.wait_for(
                self.client.request(
                    {"type": "send", "to": self.to, "client_msg_id": cid, "body": f"m {cid}"}, timeout=REPLY_DEADLINE
                ),
                REPLY_DEADLINE,
            )
            if r["type"] == "ok":
                mid = r["data"]["message_id"]
                assert self.acked.setdefault(cid, mid) == mid, "a retry was acknowledged with another id"
                self.order.append(cid)
                return
            assert r["type"] == "error" and r["code"] == "unavailable", r
            self.errors.append(cid)
            await asyncio.sleep(0.2)  # the client's retry back-off, not synchronisation

    async def run_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.send_one()
            await asyncio.sleep(0.02)  # ~50 sends/s offered

    async def flowing(self, n: int) -> None:
        """Wait until ``n`` more sends are acknowledged, so the fault lands with sends in flight."""
        target = len(self.order) + n
        await wait_until(lambda: len(self.order) >= target, what="sends flowing")

    async def recovered(self) -> None:
        """Return once a send is acknowledged again, failing after RECOVERY_DEADLINE."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECOVERY_DEADLINE
        before = len(self.order)
        while len(self.order) == before:
            assert loop.time() < deadline, "not serving again 10 s after the database came back"
            await self.send_one()


async def test_sends_survive_postgres_stop_and_restarts() -> None:
    with private_postgres() as pg:
        await asyncio.to_thread(upgrade, pg.url)
        rs, task = await start_server(make_settings(pg.url))
        try:
            a_id, a_login = await new_person(rs.services, "s6-a")
            b_id, b_login = await new_person(rs.services, "s6-b")
            a = await connect_as(rs, a_login)
            b = await connect_as(rs, b_login)
            sender = Sender(a, b_id)
            for _ in range(5):
                await sender.send_one()

            # The database is down: each send is answered with `unavailable` promptly.
            await asyncio.to_thread(pg.stop, "fast")
            for i in range(3):
                r = await asyncio.wait_for(
                    a.request({"type": "send", "to": b_id, "client_msg_id": f"down-{i}", "body": "x"}), REPLY_DEADLINE
                )
                assert r["type"] == "error" and r["code"] == "unavailable", r
            await asyncio.to_thread(pg.start)
            await sender.recovered()

            # Restarts under load: fast (clean disconnect), then immediate (crash recovery).
            for mode in ("fast", "immediate"):
                stop = asyncio.Event()
                load = asyncio.create_task(sender.run_until(stop))
                await sender.flowing(10)
                await asyncio.to_thread(pg.restart, mode)
                stop.set()
                await load
                await sender.recovered()

            # Every ack is in the database exactly once, with the acknowledged id.
            conn = await asyncpg.connect(host="127.0.0.1", port=pg.port, user="postgres", database="postgres")
            try:
                rows = await conn.fetch(
                    "SELECT client_msg_id, id FROM messages WHERE sender_id = $1 AND client_msg_id LIKE 's6-%'", a_id
                )
                down = await conn.fetchval("SELECT count(*) FROM messages WHERE client_msg_id LIKE 'down-%'")
            finally:
                await conn.close()
            stored = {r["client_msg_id"]: r["id"] for r in rows}
            assert len(rows) == len(stored), "duplicate rows for one client_msg_id"
            assert stored == sender.acked
            assert down == 0, "a send refused while the database was down was stored"

            # The recipient gets each acknowledged message once, in acknowledgement order.
            want = [sender.acked[c] for c in sender.order]
            await b.wait_events(len(want), timeout=30)
            got = [e["data"]["id"] for e in b.events if e["kind"] == "message.new"]
            assert got == want
            await a.close()
            await b.close()
        finally:
            rs.server.should_exit = True
            await task
