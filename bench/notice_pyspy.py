"""py-spy sampling of the zzd server processes during one benchmark phase (``--profile``).

``Profile.start`` attaches ``py-spy record --format raw --nonblocking`` to each
server pid we started; ``stop`` ends our own py-spy processes with SIGINT (py-spy
then writes its collapsed stacks) and ``top`` summarises them: the share of
samples whose innermost frame is in a function (self) and whose stack passes
through a function (inclusive), idle samples excluded.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

from common import PYTHON

PYSPY = str(Path(PYTHON).with_name("py-spy"))


class Profile:
    def __init__(self, name: str, pids: list[int], logdir: Path, *, gil: bool = False) -> None:
        """``gil``: sample only the thread holding the GIL (Python CPU, not waits or released-GIL C code)."""
        self.files = [logdir / f"pyspy-{name}-{i}.txt" for i in range(len(pids))]
        self.procs = [
            subprocess.Popen(
                [
                    PYSPY,
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--rate",
                    "200",
                    "--output",
                    str(f),
                    *(["--gil"] if gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, f in zip(pids, self.files, strict=True)
        ]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def top(self, n: int = 12) -> str:
        self_c: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        total = 0
        for f in self.files:
            if not f.exists():
                continue
            for line in f.read_text(errors="replace").splitlines():
                stack, _, cnt = line.rpartition(" ")
                if not cnt.isdigit():
                    continue
                c = int(cnt)
                frames = [
                    fr.split(" (")[0] + " (" + fr.split(" (")[1].split(":")[0] + ")" if " (" in fr else fr
                    for fr in stack.split(";")[1:]
                ]
                if not frames:
                    continue
                total += c
                self_c[frames[-1]] += c
                for fr in set(frames):
                    incl[fr] += c
        if not total:
            return "    (no samples)"
        out = [f"    {total} samples; self:"]
        out += [f"      {100 * c / total:5.1f}%  {fr}" for fr, c in self_c.most_common(n)]
        out.append("    inclusive (project code):")
        proj = [
            (fr, c)
            for fr, c in incl.most_common()
            if any(k in fr for k in ("zzd/", "messaging/", "org_tree/", "apps/", "kernel/"))
            and not fr.startswith("serve (")
        ]
        out += [f"      {100 * c / total:5.1f}%  {fr}" for fr, c in proj[:n]]
        return "\n".join(out)
