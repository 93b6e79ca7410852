"""A small real org tree with people who can sign in, and a ``zzd serve`` process over it.

Used by the browser tests and by ``bench/web_client.py``. The tree is two counties of 甲市 with
two townships of two villages each and two grids per village; every position gets a synthetic
holder, and the people below are seated on top (password ``PASSWORD``):

- ``zhang``: 区县长 of 柯城区 (990101) — the manager who sends notices;
- ``li``: 村书记 of the first village; ``qian``: 村主任 of the same village (chat peers);
- ``wang``: 专职网格员 of its first grid (主职) and 兼职网格员 of its second grid (兼职);
- ``zhao``: 河长 of the first village (river-litter reports are routed to this position);
- ``sun`` and ``zhou``: two more 专职网格员 for chat tests;
- ``feng``: 专职网格员 of a grid of the second village, standing in (acting) for that village's
  村主任, a position with a lower id than the grid's: their own position must still come first.

The 村妇联执委 of the first village is left vacant (``World.vacant``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kernel.db.database import Database
from org_tree.importer import import_divisions
from org_tree.jurisdiction import SYSTEM
from org_tree.synthetic import generate_people
from tests.conftest import FAST_PASSWORDS, TEST_KEYS, free_port
from tests.notices.conftest import write_divisions
from zzd.config import Settings
from zzd.migrate import upgrade
from zzd.services import Services

PASSWORD = "web-client-2026"
COUNTY = "990101"
VILLAGE = "990101001001"

#: login -> (name, [(unit code, role key, assignment kind)])
PEOPLE: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "zhang": ("张三", [(COUNTY, "county_head", "primary")]),
    "li": ("李四", [(VILLAGE, "village_secretary", "primary")]),
    "qian": ("钱七", [(VILLAGE, "village_director", "primary")]),
    "wang": ("王五", [(f"{VILLAGE}001", "grid_worker", "primary"), (f"{VILLAGE}002", "grid_volunteer", "acting")]),
    "zhao": ("赵六", [(VILLAGE, "river_chief", "primary")]),
    "sun": ("孙八", [("990101001002001", "grid_worker", "primary")]),
    "zhou": ("周九", [("990101002001001", "grid_worker", "primary")]),
    "feng": ("冯十", [("990101001002002", "grid_worker", "primary"), ("990101001002", "village_director", "acting")]),
}


@dataclass
class World:
    db_url: str
    positions: dict[str, list[int]] = field(default_factory=dict)  # login -> position ids, in PEOPLE order
    person_ids: dict[str, int] = field(default_factory=dict)
    vacant: int = 0  # a position with no holder


async def _seed(db_url: str, folder: Path) -> World:
    db = Database(db_url)
    try:
        await import_divisions(db, write_divisions(folder, townships=2, villages=2), grids_per_village=2)
        await generate_people(db, seed=5, vacancy_rate=0.05, deputy_rate=0.05, multi_share=0.3, pool_size=3)
    finally:
        await db.dispose()
    settings = Settings(database_url=db_url, jwt_keys=TEST_KEYS)  # type: ignore[arg-type]
    svc = Services.build(settings, passwords=FAST_PASSWORDS)
    await svc.start()
    world = World(db_url)
    try:
        idx = svc.org_index.index
        for login, (name, seats) in PEOPLE.items():
            person = await svc.persons.create(name, login=login, password_hash=FAST_PASSWORDS.hash_sync(PASSWORD))
            world.person_ids[login] = person.id
            for code, role, kind in seats:
                u = idx.unit(code)
                k = idx.role_slot(u, idx.role_id(role))
                position = idx.position_id(k)
                if kind == "primary":
                    await svc.org.handover(SYSTEM, position, person.id)
                else:
                    await svc.org.assign(SYSTEM, position, person.id, kind=kind)
                world.positions.setdefault(login, []).append(position)
                idx = svc.org_index.index
        k = idx.role_slot(idx.unit(VILLAGE), idx.role_id("women_federation"))
        world.vacant = idx.position_id(k)
        for a in await svc.org.history(SYSTEM, world.vacant):
            if a.end_at is None:
                await svc.org.end_assignment(SYSTEM, a.id)
    finally:
        await svc.stop()
    return world


def build_world(folder: Path) -> World:
    """Migrate a new SQLite file in ``folder`` and seed it (a few seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite+aiosqlite:///{folder / 'zzd.db'}"
    # A thread of its own: the caller may be inside Playwright's sync API, which runs an event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, db_url).result()
        return pool.submit(asyncio.run, _seed(db_url, folder / "divisions")).result()


class ServeProcess:
    """``zzd serve`` on a fixed port, restartable (the browser reconnect test restarts it)."""

    def __init__(self, world: World, folder: Path, **env: str) -> None:
        self.world = world
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "server.log"
        self.env = {
            **os.environ,
            "ZZD_DATABASE_URL": world.db_url,
            "ZZD_BROKER_URL": "memory://",
            "ZZD_JWT_KEYS": TEST_KEYS,
            "ZZD_UPLOAD_DIR": str(folder / "uploads"),
            "ZZD_BACKGROUND_INTERVAL": "0.2",
            "ZZD_INDEX_REFRESH_INTERVAL": "0.2",
            "ZZD_SEND_RATE_PER_MINUTE": "10000",
            "ZZD_LOG_LEVEL": "info",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "zzd", "serve", "--no-migrate", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log_path.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling the server's readiness, not synchronising test steps
        raise RuntimeError("server did not become ready:\n" + self.log_path.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


async def _admin(db_url: str, login: str, unit: str | None, perms: frozenset[str]) -> int:
    settings = Settings(database_url=db_url, jwt_keys=TEST_KEYS)  # type: ignore[arg-type]
    svc = Services.build(settings, passwords=FAST_PASSWORDS)
    await svc.start()
    try:
        person = await svc.persons.create(login, login=login, password_hash=FAST_PASSWORDS.hash_sync(PASSWORD))
        await svc.grants.grant(SYSTEM, person.id, unit, perms)
        return int(person.id)
    finally:
        await svc.stop()


def add_admin(
    world: World, login: str, unit: str | None = COUNTY, perms: frozenset[str] = frozenset({"assignments"})
) -> int:
    """A new person ``login`` (password ``PASSWORD``) with an admin grant of ``perms`` over ``unit`` (None: the
    whole tree): their id.

    Written to the world's database directly; a serving process reads grants per request.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _admin(world.db_url, login, unit, perms)).result()


def token(base: str, login: str) -> str:
    r = httpx.post(
        f"{base}/api/v1/auth/token", json={"grant_type": "password", "login": login, "password": PASSWORD}, timeout=10
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


if __name__ == "__main__":  # a dev server over the test world: python -m tests.web.world /tmp/webworld
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "var/webworld")
    w = build_world(target)
    sp = ServeProcess(w, target)
    sp.start()
    print(sp.base, w.positions, flush=True)
    try:
        assert sp.proc is not None
        sp.proc.wait()
    finally:
        sp.stop()


def notice_from_zhang(
    base: str, world: World, selector: str, title: str, body: str = "请确认", priority: str = "normal"
) -> int:
    """A notice (acknowledgement required) sent by ``zhang``, the county head, by the API: its id."""
    r = httpx.post(
        base + "/api/v1/notices",
        headers={"authorization": f"Bearer {token(base, 'zhang')}"},
        json={
            "as_position": world.positions["zhang"][0],
            "selector": selector,
            "client_msg_id": secrets.token_hex(6),
            "title": title,
            "body": body,
            "priority": priority,
            "ack_required": True,
        },
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    return int(r.json()["notice_id"])
