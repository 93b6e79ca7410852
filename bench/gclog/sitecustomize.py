"""Logs the zzd servers' full garbage collections (``notice_fanout.py --gc-log``).

Put on ``PYTHONPATH`` of ``zzd serve`` only; writes one line per generation-2
collection (wall time, milliseconds) to ``$ZZD_BENCH_GC_LOG/gc-<pid>.txt`` so
the benchmark can count the pauses inside each phase. Why: a full collection
of a process holding thousands of sockets stops its event loop for hundreds
of milliseconds, which sampling profilers blame on whatever line allocated.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any

_DIR = os.environ.get("ZZD_BENCH_GC_LOG")


def _install(directory: str) -> None:
    out = open(os.path.join(directory, f"gc-{os.getpid()}.txt"), "a", buffering=1)  # noqa: SIM115 - lives with the process
    started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            out.write(f"{time.time():.3f} {(time.perf_counter() - started[0]) * 1e3:.1f}\n")

    gc.callbacks.append(on_gc)


if _DIR and "serve" in getattr(sys, "orig_argv", []):
    _install(_DIR)
