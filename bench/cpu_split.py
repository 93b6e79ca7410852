"""Where the two cores went during a benchmark window: server(s), load generator, PostgreSQL, the rest.

The load generator runs on the same machine as the servers (two cores, shared
with other sessions), so a latency figure means little without knowing whether
the server or the client was short of CPU. ``CpuSplit.start`` and ``stop``
read ``/proc``: utime + stime of each server pid and of this process, of the
PostgreSQL backends serving the benchmark's database (their command line names
it), and the machine's busy time, so the rest (other jobs on the box) is the
difference.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid``; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # fields 14 and 15 of stat(5), after "pid (comm)"


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid → (thread name, utime + stime in s) of every thread of ``pid`` still alive.

    Why per thread: on SQLite the database engine runs inside the server process,
    in aiosqlite's worker thread (one per connection, the writer's busiest), so
    the process's CPU per message mixes SQLite's own work with the Python on the
    event loop (the main thread, ``tid == pid``). A thread that ended during a
    window is missing from its end reading and its CPU is lost from the split.
    """
    out: dict[int, tuple[str, float]] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return out
    for t in tasks:
        try:
            raw = (t / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        out[int(t.name)] = (name, (int(fields[11]) + int(fields[12])) / _TICK)
    return out


def thread_split(
    pid: int, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> tuple[float, float, float]:
    """(event loop thread, busiest other thread, all other threads) CPU seconds between two
    :func:`thread_cpu` readings of ``pid``. A thread born in the window counts from 0."""
    used = {tid: cpu - before.get(tid, ("", 0.0))[1] for tid, (_, cpu) in after.items()}
    loop = used.pop(pid, 0.0)
    return loop, max(used.values(), default=0.0), sum(used.values())


def pg_backends(dbname: str) -> list[int]:
    """Pids of the PostgreSQL backends connected to ``dbname`` (``postgres: user db host …``)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("postgres: ") and f" {dbname} " in cmd:
            pids.append(int(d.name))
    return pids


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + vals[4]  # idle + iowait
    return (sum(vals) - idle) / _TICK, sum(vals) / _TICK


class CpuSplit:
    """CPU shares over one window; ``stop`` returns a printable line."""

    def __init__(self, servers: dict[str, int], dbname: str) -> None:
        self.servers, self.dbname = servers, dbname
        self._t0 = 0.0
        self._s0: dict[str, float] = {}
        self._pg0: dict[int, float] = {}
        self._m0 = (0.0, 0.0)
        #: CPU seconds of each part over the last window (``stop`` fills it).
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._s0 = {k: cpu_seconds(p) for k, p in self.servers.items()} | {"load generator": cpu_seconds(os.getpid())}
        self._pg0 = {p: cpu_seconds(p) for p in pg_backends(self.dbname)}
        self._m0 = _machine()

    def stop(self) -> str:
        wall = time.monotonic() - self._t0
        ends = {k: cpu_seconds(p) for k, p in self.servers.items()} | {"load generator": cpu_seconds(os.getpid())}
        used = {k: ends[k] - self._s0[k] for k in ends}
        # A backend opened during the window counts from 0; one closed during it is lost (pools keep theirs).
        backends = pg_backends(self.dbname)
        used["PostgreSQL (this database)"] = sum(cpu_seconds(p) - self._pg0.get(p, 0.0) for p in backends)
        busy = _machine()[0] - self._m0[0]
        used["everything else on the machine"] = max(0.0, busy - sum(used.values()))
        self.used = used
        parts = ", ".join(f"{k} {100 * v / wall:.0f} %" for k, v in used.items())
        return f"CPU over {wall:.0f} s of traffic (% of one core; the machine has {os.cpu_count()}): {parts}"
