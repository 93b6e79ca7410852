"""The per-recipient stream bump with and without room on the page (migration 0010, issue 15 item 3).

Run:  .venv/bin/python bench/stream_bump.py [--persons 200000] [--audience 2078] [--rounds 40]

A send to a group, or a notice's fan-out chunk, bumps ``last_seq`` of every
recipient's ``person_streams`` row in one statement (messaging/events.py
``_PG_BUMP``: rows locked in person order, then updated). On a fresh
PostgreSQL database two scratch copies of the table are built with
``--persons`` rows each: one as before migration 0010 (fillfactor 100, the
same-run baseline) and one as after it (fillfactor 30). Rounds alternate
between them; each bumps the same ``--audience`` persons spread over the
table. Printed: statement time p50 / p99 per table and the share of HOT
updates (``pg_stat_user_tables.n_tup_hot_upd``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from common import asyncpg_dsn, percentile, postgres_database

BUMP = """
WITH locked AS MATERIALIZED (
    SELECT person_id FROM {t} WHERE person_id = ANY($1::bigint[]) ORDER BY person_id FOR UPDATE
)
UPDATE {t} AS s SET last_seq = s.last_seq + 1 FROM locked WHERE s.person_id = locked.person_id
"""


async def run(dsn: str, persons: int, audience: int, rounds: int) -> None:
    conn = await asyncpg.connect(dsn)
    tables = {"fillfactor 100 (before 0010)": "bump_full", "fillfactor 30 (after 0010)": "bump_room"}
    try:
        for name, ff in (("bump_full", 100), ("bump_room", 30)):
            await conn.execute(
                f"CREATE TABLE {name} (person_id bigint PRIMARY KEY, epoch varchar(16) NOT NULL, "
                f"last_seq bigint NOT NULL, min_seq bigint NOT NULL) WITH (fillfactor = {ff})"
            )
            await conn.execute(
                f"INSERT INTO {name} SELECT g, substr(md5(g::text), 1, 8), 0, 1 FROM generate_series(1, $1) g",
                persons,
            )
            await conn.execute(f"VACUUM ANALYZE {name}")
        step = max(1, persons // audience)
        ids = list(range(1, persons + 1, step))[:audience]
        times: dict[str, list[float]] = {t: [] for t in tables.values()}
        for _ in range(rounds):
            for t in tables.values():
                async with conn.transaction():
                    start = time.perf_counter()
                    await conn.execute(BUMP.format(t=t), ids)
                    times[t].append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(1.5)  # statistics reach pg_stat_user_tables within a second
        hot = {
            r[0]: (int(r[1]), int(r[2]))
            for r in await conn.fetch(
                "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname LIKE 'bump_%'"
            )
        }
    finally:
        await conn.close()
    print(f"\n{persons:,} stream rows; {rounds} bumps of {audience:,} rows each, alternating (ms per statement)")
    print(f"{'table':<30}{'p50':>8}{'p99':>8}{'mean':>8}{'HOT updates':>14}")
    for name, t in tables.items():
        upd, hot_upd = hot.get(t, (0, 0))
        share = f"{100 * hot_upd / upd:.0f} %" if upd else "—"
        ms = times[t]
        p50, p99, mean = statistics.median(ms), percentile(ms, 99), statistics.mean(ms)
        print(f"{name:<30}{p50:>8.1f}{p99:>8.1f}{mean:>8.1f}{share:>14}")
    full, room = statistics.median(times["bump_full"]), statistics.median(times["bump_room"])
    print(f"ratio after / before (p50): {room / full:.2f}×")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=200_000)
    ap.add_argument("--audience", type=int, default=2078)
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    with postgres_database() as url:
        asyncio.run(run(asyncpg_dsn(url), args.persons, args.audience, args.rounds))


if __name__ == "__main__":
    main()
