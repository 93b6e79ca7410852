"""kill -9 of the process receiving an upload: no file under the digest, no row; the retry elsewhere works."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from kernel.clock import SystemClock
from kernel.db.database import Database
from messaging.attachments.schema import attachments
from messaging.attachments.store import LocalDiskStore
from org_tree.people import PersonDirectory
from tests.attachments.conftest import image, sha, stored_files
from tests.client import PASSWORD, login
from tests.conftest import FAST_PASSWORDS
from tests.procs import zzd_processes
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # real server processes, killed


async def _rows(db_url: str, digest: str) -> int:
    db = Database(db_url, pool_size=1)
    try:
        async with db.read() as conn:
            q = select(func.count()).select_from(attachments).where(attachments.c.digest == digest)
            return int((await conn.execute(q)).scalar_one())
    finally:
        await db.dispose()


async def test_kill_9_mid_upload_leaves_only_a_temp_file(db_url: str, redis_url: str, tmp_path: Path) -> None:
    root = tmp_path / "shared-uploads"
    db = Database(db_url, pool_size=1)
    try:
        person = await PersonDirectory(db, SystemClock()).create(
            "拍照的网格员", login=f"grid{secrets.token_hex(5)}", password_hash=FAST_PASSWORDS.hash_sync(PASSWORD)
        )
    finally:
        await db.dispose()
    data = image(size=60_000)
    async with zzd_processes(db_url, redis_url, 2, ZZD_UPLOAD_DIR=str(root)) as (a, b):
        token = (await login(a.http, person.login or ""))["access_token"]
        reader, writer = await asyncio.open_connection("127.0.0.1", a.port)
        head = (
            f"POST /api/v1/uploads HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: image/jpeg\r\nX-Content-SHA256: {sha(data)}\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        writer.write(head.encode() + data[:30_000])
        await writer.drain()
        await wait_until(lambda: any((root / ".incoming").glob("*.part")), what="upload being written")
        a.proc.kill()
        await a.proc.wait()
        writer.close()

        store = LocalDiskStore(root)
        assert not await store.exists(sha(data))
        assert [p.parent.name for p in stored_files(root)] == [".incoming"]  # only the temp file
        assert await _rows(db_url, sha(data)) == 0
        assert store.sweep_incoming(older_than=0) == 1
        assert stored_files(root) == []

        async with httpx.AsyncClient(base_url=b.http) as c:
            r = await c.post(
                "/api/v1/uploads",
                content=data,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "image/jpeg",
                    "X-Content-SHA256": sha(data),
                },
            )
        assert r.status_code == 201, r.text
        assert await store.exists(sha(data))
        assert await _rows(db_url, sha(data)) == 1
