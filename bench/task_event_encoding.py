"""CPU per task event body: built through its model (``TaskChanged``, what the writer does) beside a bare dict.

Usage: ``.venv/bin/python bench/task_event_encoding.py [--events 20000] [--rounds 5]``

The escalation batch (``messaging/tasks/writer.py``) writes one ``task.updated`` per
task, whose JSON is also the outbox row's payload. Since issue 12 it is built as
``TaskChanged(task=TaskView, event=TaskTransition)`` and encoded once (orjson);
the bare baseline is what it did before: ``json.dumps`` of the same dict, no model.
Both run in this process, alternating rounds, on the same rows; the figure is
process CPU time per event (not wall time, so other work on a shared machine counts
less), the median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from messaging.tasks.lifecycle import Action
from messaging.tasks.model import TaskRow
from messaging.tasks.writer import Change, _changed, _event_dict


def _rows(n: int) -> list[tuple[dict[str, Any], bool]]:
    now = datetime(2026, 12, 2, 8, 30, 0, 123456, tzinfo=UTC).replace(tzinfo=None)  # SQLite/PG rows are naive UTC
    out = []
    for i in range(n):
        t = TaskRow(
            i + 1, "river_litter", f"河道垃圾 {i}", "正文", "created", 3, 1000 + i % 150, 200 + i % 15, (), 200,
            50_000 + i, 1000 + i % 150, (), "report", 9000 + i, 1, now + timedelta(hours=1), None,
            now - timedelta(hours=2), now, None, None, None,
        )  # fmt: skip
        data = {"from_position_id": 1000 + i % 150, "level": 1}
        c = Change(Action.ESCALATE, None, None, data=data, urgent=i % 2 == 0)
        out.append(({"task": t.summary(), "event": _event_dict(t, c, "created", now)}, c.urgent))
    return out


def bare(body: dict[str, Any], urgent: bool) -> str:
    """Before: the dict encoded by the outbox's json.dumps, ``urgent`` spliced in."""
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text[:-1] + ',"urgent":true}' if urgent else text


def model(body: dict[str, Any], urgent: bool) -> str:
    """Now: the body built as ``TaskChanged``, encoded once; the urgent copy encoded again."""
    changed = _changed(body, False)
    text = changed.text()
    return changed.model_copy(update={"urgent": True}).text() if urgent else text


def _cpu_per_event(fn: Callable[[dict[str, Any], bool], str], rows: list[tuple[dict[str, Any], bool]]) -> float:
    start = time.process_time()
    for body, urgent in rows:
        fn(body, urgent)
    return (time.process_time() - start) / len(rows) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    rows = _rows(args.events)
    for body, urgent in rows[:50]:  # the same JSON both ways
        assert json.loads(model(body, urgent)) == json.loads(bare(body, urgent))
    times: dict[str, list[float]] = {"model": [], "bare": []}
    for _ in range(args.rounds):
        times["bare"].append(_cpu_per_event(bare, rows))
        times["model"].append(_cpu_per_event(model, rows))
    b, m = statistics.median(times["bare"]), statistics.median(times["model"])
    print(f"task event body, {args.events} events x {args.rounds} rounds, CPU per event (median):")
    print(f"  TaskChanged model + orjson: {m:.1f} us")
    print(f"  bare dict + json.dumps:     {b:.1f} us  (same run)")
    print(f"  difference: {m - b:+.1f} us per escalated task")


if __name__ == "__main__":
    main()
