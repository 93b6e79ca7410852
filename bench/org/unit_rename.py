"""What telling a renamed unit's holders costs the rename (``positions.changed`` in its transaction).

    .venv/bin/python -m bench.org.unit_rename [--villages 78] [--renames 7]

On a fresh PostgreSQL database: one township of ``--villages`` villages × 3 grids with synthetic
holders, served in-process (``Services``, memory broker). The township is renamed ``--renames``
times with every holder below it told (the bound lifted), then as many times with nobody told
(the bound at 0): p50 and max of each rename's call, which holds the ``org_version`` lock — and
so every other org change — for about that long. 78 villages is ~1,000 positions (the bound,
``org_tree.structure.TELL_HOLDERS_UP_TO``); 999 villages ~13,000 (a county's order).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from bench.org.common import PG, _admin
from tests.conftest import make_settings, serving
from tests.notices.conftest import write_divisions

from kernel.db.database import Database
from org_tree import structure
from org_tree.importer import import_divisions
from org_tree.jurisdiction import SYSTEM
from org_tree.synthetic import generate_people
from zzd.migrate import upgrade


async def _run(url: str, villages: int, renames: int) -> None:
    db = Database(url)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_divisions(Path(tmp), townships=1, villages=villages, counties=["990101"])
        await import_divisions(db, folder, grids_per_village=3)
    await generate_people(db, seed=7, vacancy_rate=0.0, deputy_rate=0.05, pool_size=2)
    await db.dispose()
    async with serving(make_settings(url)) as rs:
        s = rs.services_obj  # type: ignore[attr-defined]
        idx = s.org_index.index
        below = idx.subtree(idx.unit("990101001"))
        slots = [k for v in below for k in idx.unit_slots(v)]
        holders = {p for k in slots for p in idx.current_holders(k)}
        print(f"positions {len(slots)}, holders {len(holders)}")
        for label, bound in (("told", 10**9), ("nobody told", 0)):
            structure.TELL_HOLDERS_UP_TO = bound
            took = []
            for i in range(renames):
                t0 = time.perf_counter()
                await s.org.rename_unit(SYSTEM, "990101001", f"镇{bound}x{i}")
                took.append(time.perf_counter() - t0)
            print(f"{label}: p50 {statistics.median(took) * 1000:.1f} ms, max {max(took) * 1000:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--villages", type=int, default=78)
    ap.add_argument("--renames", type=int, default=7)
    a = ap.parse_args()
    name = f"zzd_bench_rename_{secrets.token_hex(3)}"
    url = f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        upgrade(url)
        asyncio.run(_run(url, a.villages, a.renames))
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
