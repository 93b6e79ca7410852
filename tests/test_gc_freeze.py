"""A server process takes its start-up heap out of the cyclic collector (``zzd.server.freeze_start_up_heap``).

Why it matters: a full collection walked the org index, the app and every
imported module again, pausing a loaded server's event loop for hundreds of
milliseconds; frozen, they are walked no more. Frozen objects in a cycle that
later becomes garbage would never be freed, so the index a rebuild replaces
must be freed by reference counting alone.
"""

from __future__ import annotations

import gc
import re

import httpx

from tests.org.trees import Tree
from tests.procs import zzd_processes
from tests.waiting import wait_until


def _tree() -> Tree:
    t = Tree()
    codes = ["33", "3301", "330102", "330102001", "330102001001", "330102001001001"]
    for level, code in enumerate(codes, start=1):
        t.units[level] = (level - 1 or None, level, code)
    t.units[7] = (5, 6, "330102001001002")
    t.positions = {10: (1, 1), 11: (2, 3), 12: (6, 4), 13: (6, 5), 14: (5, 2), 15: (7, 4)}
    t.holders = [(10, 100, "primary"), (12, 101, "primary"), (13, 101, "concurrent"), (14, 102, "primary")]
    return t


def test_a_replaced_org_index_is_freed_without_the_collector() -> None:
    tree = _tree()
    gc.collect()
    gc.disable()
    try:
        index = tree.index()
        gc.collect()  # whatever the build itself left
        del index
        # Nothing of the index was in a reference cycle: the collector finds no garbage.
        assert gc.collect() == 0
    finally:
        gc.enable()


async def test_a_server_process_freezes_its_start_up_heap(pg_database: str, redis_url: str) -> None:
    async with zzd_processes(pg_database, redis_url, count=1) as (proc,):

        async def frozen() -> int:
            async with httpx.AsyncClient() as h:
                text = (await h.get(f"{proc.http}/metrics")).text
            found = re.search(r"^zzd_gc_frozen_objects (\S+)$", text, re.M)
            return int(float(found.group(1))) if found else 0

        # The modules, the app and the org index: tens of thousands of objects at least.
        assert await wait_until(frozen, what="start-up heap frozen") > 50_000
