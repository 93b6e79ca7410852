"""Shared helpers of the org benchmarks: throw-away databases, timing, memory."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import psutil

import kernel.audit  # noqa: F401  (org writes append to the audit chain)
import kernel.schema  # noqa: F401
import org_tree.org_schema  # noqa: F401  (registers the org tables)
from kernel.db.base import metadata
from kernel.db.database import Database
from org_tree.divisions import SHIPPED_ZHEJIANG

PG = {"host": os.environ.get("ZZD_BENCH_PG_HOST", "127.0.0.1"), "port": 5432, "user": "postgres"}
ZHEJIANG = SHIPPED_ZHEJIANG
CHINA = Path(os.environ.get("ZZD_CHINA_DIVISIONS", "/work/shared/data/divisions/china"))
ORG_TABLES = ["units", "roles", "positions", "persons", "assignments", "org_version", "org_changes"]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(database="postgres", **PG)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_db(backend: str, tag: str) -> AsyncIterator[Database]:
    """A fresh database with the org schema, dropped (or deleted) afterwards."""
    name = f"zzd_bench_{tag}_{secrets.token_hex(3)}"
    if backend == "postgres":
        await _admin(f'CREATE DATABASE "{name}"')
        url = f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    else:
        path = Path("/tmp") / f"{name}.db"
        url = f"sqlite+aiosqlite:///{path}"
    db = Database(url, statement_timeout_ms=600_000)
    try:
        async with db.write() as conn:
            await conn.run_sync(metadata.create_all)
        yield db
    finally:
        await db.dispose()
        if backend == "postgres":
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"/tmp/{name}.db{suffix}").unlink(missing_ok=True)


async def import_kept_db(
    url: str, name: str, *, provinces: set[str] | None = None, pool_size: int = 3
) -> tuple[int, int]:
    """Create database ``name`` with the schema, import the national divisions (or ``provinces``) and
    generate holders; kept for later runs. Returns (units, persons)."""
    from org_tree.importer import import_divisions
    from org_tree.synthetic import generate_people

    await _admin(f'CREATE DATABASE "{name}"')
    db = Database(url, statement_timeout_ms=3_600_000)
    try:
        async with db.write() as c:
            await c.run_sync(metadata.create_all)
        report = await import_divisions(db, CHINA, provinces=provinces)
        people = await generate_people(db, persons_target=None, pool_size=pool_size)
        return sum(report.by_level.values()), people.persons
    finally:
        await db.dispose()


async def drop_db(name: str) -> None:
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rss_mib() -> float:
    """Resident memory after a collection, with freed heap handed back to the OS (glibc)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return psutil.Process().memory_info().rss / 2**20


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return qs[49] * 1e3, qs[98] * 1e3


def time_it(fn: Callable[[], Any], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def run(main: Callable[[], Any]) -> None:
    asyncio.run(main())
