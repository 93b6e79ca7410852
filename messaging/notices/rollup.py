"""Rollup of receipt counts per child unit, at any level of the tree (pure, no I/O).

The database answers one ``GROUP BY unit_id`` per notice; the in-memory index
maps each unit to the child of the requested unit whose subtree holds it
(pre-order numbering makes a subtree an interval, so this is one bisection
per unit). Drilling down is calling again with a child as the requested unit.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Iterable

from messaging.notices.model import UnitProgress
from org_tree.index import OrgIndex

logger = logging.getLogger(__name__)

__all__ = ["UnitCounts", "lowest_common_unit", "rollup"]

#: (unit_id, receipts, delivered, read, acked)
UnitCounts = tuple[int, int, int, int, int]


def _u_of(index: OrgIndex, unit_id: int) -> int:
    return index.u_of_id[unit_id] if 0 <= unit_id < len(index.u_of_id) else -1


def lowest_common_unit(index: OrgIndex, unit_ids: Iterable[int]) -> int | None:
    """Pre-order number of the lowest unit whose subtree holds every given unit (None if none known)."""
    us = [u for u in (_u_of(index, i) for i in unit_ids) if u >= 0]
    if not us:
        return None
    a, b = min(us), max(us)
    while not (a <= b < index.u_end[a]):
        a = index.u_parent[a]
    return a


def _progress(index: OrgIndex, u: int, c: list[int]) -> UnitProgress:
    return UnitProgress(int(index.u_id[u]), index.u_code[u], index.u_name[u], c[0], c[1], c[2], c[3])


def rollup(index: OrgIndex, parent: int, counts: Iterable[UnitCounts]) -> tuple[tuple[UnitProgress, ...], int]:
    """Sum ``counts`` into ``parent`` itself and each child subtree of ``parent``.

    Returns:
        the parent's own row first (if anything is addressed in it directly),
        then one row per child with receipts, in tree order; and the number of
        receipts outside ``parent``'s subtree.
    """
    kids = index.children(parent)
    sums: dict[int, list[int]] = {}
    elsewhere = 0
    hi = index.u_end[parent]
    for unit_id, n, delivered, read, acked in counts:
        u = _u_of(index, unit_id)
        if u < 0 or not parent <= u < hi:
            elsewhere += n
            continue
        bucket = parent if u == parent else kids[bisect_right(kids, u) - 1]
        s = sums.setdefault(bucket, [0, 0, 0, 0])
        s[0] += n
        s[1] += delivered
        s[2] += read
        s[3] += acked
    rows = [_progress(index, b, sums[b]) for b in [parent, *kids] if b in sums]
    return tuple(rows), elsewhere
