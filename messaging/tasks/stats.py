"""Closed-loop figures: how long tasks take to be accepted, resolved and closed, rolled up the tree.

Every duration is measured from the task's creation (the moment the report
was filed, for a report's task). A task counts towards the unit where the
matter arose (``origin_unit_id``: the reporting grid, or the first owner's
unit) and every unit above it, so a county's figures include its villages'
tasks, also those escalated to the county itself.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.tasks.categories import check_category_key
from messaging.tasks.schema import tasks
from org_tree.index import OrgIndex

logger = logging.getLogger(__name__)

__all__ = ["Durations", "percentile", "unit_stats"]

MEASURES = ("accept", "resolve", "close")
MAX_ROWS = 500_000


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100) of already sorted values; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Durations:
    count: int = 0
    closed: int = 0
    samples: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MEASURES})

    def add(self, created: datetime, accepted: datetime | None, resolved: datetime | None, closed: datetime | None,
            state: str) -> None:  # fmt: skip
        self.count += 1
        self.closed += state == "closed"
        for m, at in zip(MEASURES, (accepted, resolved, closed), strict=True):
            if at is not None:
                self.samples[m].append((at - created).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tasks": self.count, "closed": self.closed}
        for m in MEASURES:
            vals = sorted(self.samples[m])
            out[m] = {"n": len(vals), "p50_s": percentile(vals, 50), "p90_s": percentile(vals, 90)}
        return out


def _unit(index: OrgIndex, u: int) -> dict[str, Any]:
    return {"id": index.unit_id(u), "code": index.unit_code(u), "name": index.unit_name(u)}


async def unit_stats(
    conn: AsyncConnection, index: OrgIndex, u: int, *, category: str | None = None, since: datetime | None = None
) -> dict[str, Any]:
    """Totals for the subtree of ``u``, per category, and per child unit (p50/p90 of each measure)."""
    q = select(
        tasks.c.origin_unit_id, tasks.c.category, tasks.c.state, tasks.c.created_at, tasks.c.accepted_at,
        tasks.c.resolved_at, tasks.c.closed_at,
    )  # fmt: skip
    if category is not None:
        q = q.where(tasks.c.category == check_category_key(category))
    if since is not None:
        q = q.where(tasks.c.created_at >= since)
    children = index.children(u)
    child_of: dict[int, int] = {}
    total = Durations()
    by_cat: dict[str, Durations] = {}
    by_child = {c: Durations() for c in children}
    rows: Iterable[Any] = await conn.execute(q.limit(MAX_ROWS))
    for origin, cat, state, created, accepted, resolved, closed in rows:
        ou = index.find_unit(origin)
        if ou < 0 or not index.contains(u, ou):
            continue
        total.add(created, accepted, resolved, closed, state)
        by_cat.setdefault(cat, Durations()).add(created, accepted, resolved, closed, state)
        if ou == u:
            continue
        c = child_of.get(ou)
        if c is None:
            c = child_of[ou] = index.child_toward(u, ou)
        by_child[c].add(created, accepted, resolved, closed, state)
    return {
        "unit": _unit(index, u),
        "category": category,
        "total": total.to_dict(),
        "by_category": {k: v.to_dict() for k, v in sorted(by_cat.items())},
        "by_child": [{"unit": _unit(index, c), **d.to_dict()} for c, d in by_child.items() if d.count],
    }
