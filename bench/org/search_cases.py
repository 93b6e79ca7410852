"""1,000 realistic 找岗位 queries drawn from the tree, and a bare baseline of the same look-ups.

Queries (fixed seed): unit names of cities, counties, townships and villages;
their pinyin and initials; role names, keys, pinyin and initials; holders'
names and pinyin; and two-term combinations (``柯城区 网格员``, ``kcq wgy``,
``金桂村 张伟``). Baseline, same run: for every term, a plain ``dict`` look-up of
the exact string among unit and holder names plus one ``str.find`` over the
joined distinct names — the floor any search over these strings pays.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from org_tree.directory import Directory, pinyin_fast
from org_tree.directory_service import DirectoryService
from org_tree.index import OrgIndex
from org_tree.jurisdiction import Actor

__all__ = ["make_queries", "run_search_bench"]


def make_queries(index: OrgIndex, d: Directory, n: int = 1000, seed: int = 17) -> list[str]:
    rnd = random.Random(seed)
    units = [u for u in index.units() if 2 <= index.unit_level(u) <= 5]
    holders = [p for p in range(len(d._person_name_of)) if d._person_name_of[p] >= 0]
    roles = list(index.roles.values())

    def unit() -> int:
        return rnd.choice(units)

    def person_name() -> str:
        return d.person_name(rnd.choice(holders))

    out: list[str] = []
    kinds = ["unit", "unit", "unit_py", "unit_ini", "role", "holder", "holder", "holder_py", "two", "two"]
    while len(out) < n:
        kind = rnd.choice(kinds)
        if kind == "unit":
            out.append(index.unit_name(unit()))
        elif kind == "unit_py":
            out.append(pinyin_fast(index.unit_name(unit()))[0])
        elif kind == "unit_ini":
            u = unit()
            if index.unit_level(u) <= 3:
                out.append(pinyin_fast(index.unit_name(u))[1])
        elif kind == "role":
            r = rnd.choice(roles)
            out.append(rnd.choice([r.name, r.key, *pinyin_fast(r.name)]))
        elif kind == "holder":
            out.append(person_name())
        elif kind == "holder_py":
            out.append(pinyin_fast(person_name())[0])
        else:
            u = unit()
            r = rnd.choice(roles)
            first = rnd.choice([index.unit_name(u), pinyin_fast(index.unit_name(u))[1]])
            second = rnd.choice([r.name, pinyin_fast(r.name)[1], person_name()])
            out.append(f"{first} {second}")
    return out[:n]


def _pct(xs: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(xs, n=100, method="inclusive")
    return qs[49] * 1e3, qs[98] * 1e3


async def run_search_bench(index: OrgIndex, service: DirectoryService, queries: list[str]) -> dict[str, Any]:
    """p50/p99 of the directory search (first page of 20, hits built) beside the bare baseline."""
    d = await service.directory()
    actor = Actor(0)
    zzd: list[float] = []
    zzd_cpu: list[float] = []  # this thread's CPU: what the query cost, whatever else the machine ran
    totals = 0
    for q in queries:
        t, c = time.perf_counter(), time.thread_time()
        page = await service.search(actor, q, limit=20)
        zzd_cpu.append(time.thread_time() - c)
        zzd.append(time.perf_counter() - t)
        totals += page.total > 0
    unit_by_name: dict[str, list[int]] = {}
    for u in index.units():
        unit_by_name.setdefault(index.unit_name(u), []).append(u)
    person_by_name: dict[str, list[int]] = {}
    for p in range(len(d._person_name_of)):
        if d._person_name_of[p] >= 0:
            person_by_name.setdefault(d.person_name(p), []).append(p)
    joined = "\n".join([*unit_by_name, *person_by_name])
    bare: list[float] = []
    bare_cpu: list[float] = []
    for q in queries:
        t, c = time.perf_counter(), time.thread_time()
        for term in q.split():
            unit_by_name.get(term)
            person_by_name.get(term)
            joined.find(term)
        bare_cpu.append(time.thread_time() - c)
        bare.append(time.perf_counter() - t)
    z50, z99 = _pct(zzd)
    b50, b99 = _pct(bare)
    zc50, zc99 = _pct(zzd_cpu)
    bc50, bc99 = _pct(bare_cpu)
    slow = sorted(zip(zzd_cpu, queries, strict=True), reverse=True)[:10]
    return {"queries": len(queries), "with_hits": totals, "p50_ms": z50, "p99_ms": z99, "max_ms": max(zzd) * 1e3,
            "bare_p50_ms": b50, "bare_p99_ms": b99, "cpu_p50_ms": zc50, "cpu_p99_ms": zc99, "bare_cpu_p50_ms": bc50,
            "bare_cpu_p99_ms": bc99, "slowest_cpu": [(round(c * 1e3, 1), q) for c, q in slow]}  # fmt: skip
