"""Resolution latency and index memory on Zhejiang (or the whole country) in PostgreSQL.

    .venv/bin/python -m bench.org.resolve                       # Zhejiang + 1.2 M persons
    .venv/bin/python -m bench.org.resolve --tree china --pool-size 1   # national tree with grids

Reports: import and index-load times, index memory (RSS growth while loading, and the
index's own estimate), and p50/p99 over 1,000 runs of: every 专职网格员 in a province, a
county-scale selector, and jurisdiction check + resolution of the county selector.
Baseline in the same run: a bare ``array`` slice + ``tuple()`` of the same number of
holder ids (the floor any Python resolution pays to hand back its result).
"""

from __future__ import annotations

import argparse
import time
from array import array

from bench.org.common import CHINA, ZHEJIANG, percentiles, rss_mib, run, scratch_db, time_it

from org_tree.importer import import_divisions
from org_tree.index import OrgIndex
from org_tree.jurisdiction import check_jurisdiction
from org_tree.preview import preview
from org_tree.resolution import VacancyPolicy, resolve, resolve_ranges
from org_tree.selectors import parse_text
from org_tree.synthetic import generate_people


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", choices=["zhejiang", "china"], default="zhejiang")
    parser.add_argument("--persons", type=int, default=None, help="default 1.2 M for Zhejiang")
    parser.add_argument("--pool-size", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    folder = ZHEJIANG if args.tree == "zhejiang" else CHINA
    persons = args.persons if args.persons is not None else (1_200_000 if args.tree == "zhejiang" else None)
    async with scratch_db("postgres", args.tree) as db:
        t0 = time.perf_counter()
        report = await import_divisions(db, folder)
        t1 = time.perf_counter()
        people = await generate_people(db, persons_target=persons, pool_size=args.pool_size)
        t2 = time.perf_counter()
        print(f"import: {sum(report.by_level.values()):,} units {report.by_level} in {t1 - t0:.1f}s")
        print(f"people: {people.persons:,} persons, {people.assignments:,} assignments in {t2 - t1:.1f}s")
        before = rss_mib()
        t3 = time.perf_counter()
        index = await OrgIndex.load(db)
        t4 = time.perf_counter()
        after = rss_mib()
    estimate = index.memory_bytes() / 2**20
    print(
        f"index: load {t4 - t3:.1f}s; {index.unit_count():,} units, {index.position_count():,} positions, "
        f"{index.stats()['primary_holders']:,} holders; "
        f"RSS +{after - before:,.0f} MiB (columns estimate {estimate:,.0f} MiB)"
    )
    county_u = next(u for u in index.units() if index.unit_level(u) == 3)
    secretary = index.position_id(index.role_slot(county_u, index.role_id("party_secretary")))
    county = index.unit_code(county_u)
    cases = {
        "province: 专职网格员@33/**": parse_text("专职网格员@33/**"),
        f"county: 村书记|专职网格员 under {county}": parse_text(f"村书记@{county}/** | 专职网格员@{county}/**"),
    }
    if args.tree == "china":
        cases["province: 专职网格员@44/** (广东)"] = parse_text("专职网格员@44/**")
        cases["country: 专职网格员 under every province"] = parse_text(
            " | ".join(f"专职网格员@{index.unit_code(u)}/**" for u in index.units() if index.unit_level(u) == 1)
        )
    policy = VacancyPolicy()
    for label, sel in cases.items():
        audience = resolve(index, sel)
        samples = time_it(lambda sel=sel: resolve(index, sel, policy), args.runs)
        p50, p99 = percentiles(samples)
        n = len(audience.person_ids)
        src = array("q", range(n))
        base50, base99 = percentiles(time_it(lambda src=src: tuple(src[0 : len(src)]), args.runs))
        print(
            f"{label}: {len(audience.positions):,} positions → {len(audience.persons):,} persons, "
            f"{len(audience.fallbacks):,} fallbacks; resolve p50 {p50:.3f} ms p99 {p99:.3f} ms "
            f"(bare tuple of {n:,} ids p50 {base50:.3f} ms p99 {base99:.3f} ms)"
        )
    county_sel = list(cases.values())[1]
    samples = time_it(
        lambda: resolve_ranges(index, check_jurisdiction(index, secretary, county_sel), policy), args.runs
    )
    p50, p99 = percentiles(samples)
    print(f"county with jurisdiction check (as 书记 of {county}): p50 {p50:.3f} ms p99 {p99:.3f} ms")
    aud = resolve(index, county_sel)
    samples = time_it(lambda: preview(index, aud), min(args.runs, 200))
    p50, p99 = percentiles(samples)
    print(f"county preview: p50 {p50:.3f} ms p99 {p99:.3f} ms")


if __name__ == "__main__":
    run(main)
