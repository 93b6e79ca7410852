"""Sample what PostgreSQL is busy with during one benchmark phase (``pg_stat_activity``).

A background thread polls every ``interval`` s and counts active backends of
the benchmark database by (backend type, wait event, first words of the query),
so a phase where PostgreSQL and not zzd is the bottleneck shows which
statements (or autovacuum) held it.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter

import asyncpg

SQL = """
SELECT backend_type, state, coalesce(wait_event_type || ':' || wait_event, 'cpu') AS w, left(query, 400) AS q
FROM pg_stat_activity
WHERE (datname = $1 OR backend_type LIKE 'autovacuum%') AND state IS DISTINCT FROM 'idle' AND pid <> pg_backend_pid()
"""


def _shape(q: str) -> str:
    q = re.sub(r"\s+", " ", q)
    q = re.sub(r"\(\$\d+(::\w+)?(, \$\d+(::\w+)?)*\)", "(…)", q)
    q = re.sub(r"(\(\$\d+, \$\d+\)(, )?)+", "(…)", q)
    return q[:140]


class PgSampler:
    def __init__(self, dsn: str, dbname: str, interval: float = 0.05) -> None:
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=lambda: asyncio.run(self._run(dsn, dbname, interval)), daemon=True)
        self._t.start()

    async def _run(self, dsn: str, dbname: str, interval: float) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            while not self._stop.is_set():
                self.samples += 1
                for r in await conn.fetch(SQL, dbname):
                    key = f"{r['backend_type']} {r['state']} [{r['w']}] {_shape(r['q'] or '')}"
                    self.counts[key] += 1
                await asyncio.sleep(interval)
        finally:
            await conn.close()

    def stop(self, n: int = 10) -> str:
        self._stop.set()
        self._t.join(timeout=10)
        if not self.samples:
            return "    (no samples)"
        lines = [f"    pg_stat_activity, {self.samples} samples; mean active backends per sample:"]
        lines += [f"      {c / self.samples:5.2f}  {k}" for k, c in self.counts.most_common(n)]
        return "\n".join(lines)
