"""Sample what PostgreSQL is busy with during one benchmark phase (``pg_stat_activity``).

A background thread polls every ``interval`` s and counts active backends of
the benchmark database by (backend type, wait event, first words of the query),
so a phase where PostgreSQL and not zzd is the bottleneck shows which
statements (or autovacuum) held it. It also adds up the CPU time of that
database's backends (autovacuum workers on it included) from ``psutil``, so a
benchmark can give PostgreSQL's CPU per message on a machine others share,
where "the rest of the machine" would count their work too. The shared
background processes (WAL writer, checkpointer) are not counted.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter

import asyncpg
import psutil

SQL = """
SELECT backend_type, state, coalesce(wait_event_type || ':' || wait_event, 'cpu') AS w, left(query, 400) AS q
FROM pg_stat_activity
WHERE (datname = $1 OR backend_type LIKE 'autovacuum%') AND state IS DISTINCT FROM 'idle' AND pid <> pg_backend_pid()
"""
PIDS = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"


def _cpu(pid: int) -> float | None:
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(t.user + t.system)


def _shape(q: str) -> str:
    q = re.sub(r"\s+", " ", q)
    q = re.sub(r"\(\$\d+(::\w+)?(, \$\d+(::\w+)?)*\)", "(…)", q)
    q = re.sub(r"(\(\$\d+, \$\d+\)(, )?)+", "(…)", q)
    return q[:140]


class PgSampler:
    def __init__(self, dsn: str, dbname: str, interval: float = 0.05) -> None:
        self.counts: Counter[str] = Counter()
        self.samples = 0
        #: pid → (CPU seconds when first seen, when last seen); a backend first seen after the
        #: start counts from 0 (it was started during the phase).
        self._cpu: dict[int, tuple[float, float]] = {}
        self._first_round = True
        self._stop = threading.Event()
        self._t = threading.Thread(target=lambda: asyncio.run(self._run(dsn, dbname, interval)), daemon=True)
        self._t.start()

    async def _run(self, dsn: str, dbname: str, interval: float) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            n = 0
            while not self._stop.is_set():
                if n % max(1, round(0.25 / interval)) == 0:
                    await self._track_cpu(conn, dbname)
                n += 1
                self.samples += 1
                for r in await conn.fetch(SQL, dbname):
                    key = f"{r['backend_type']} {r['state']} [{r['w']}] {_shape(r['q'] or '')}"
                    self.counts[key] += 1
                await asyncio.sleep(interval)
            await self._track_cpu(conn, dbname)
        finally:
            await conn.close()

    async def _track_cpu(self, conn: asyncpg.Connection, dbname: str) -> None:
        for r in await conn.fetch(PIDS, dbname):
            now = _cpu(int(r["pid"]))
            if now is None:
                continue
            first = self._cpu.get(int(r["pid"]), (now if self._first_round else 0.0, now))[0]
            self._cpu[int(r["pid"])] = (first, now)
        self._first_round = False

    def cpu_seconds(self) -> float:
        """CPU seconds the database's backends used while sampled (read after :meth:`stop`)."""
        return sum(last - first for first, last in self._cpu.values())

    def stop(self, n: int = 10) -> str:
        self._stop.set()
        self._t.join(timeout=10)
        if not self.samples:
            return "    (no samples)"
        lines = [f"    pg_stat_activity, {self.samples} samples; mean active backends per sample:"]
        lines += [f"      {c / self.samples:5.2f}  {k}" for k, c in self.counts.most_common(n)]
        return "\n".join(lines)
