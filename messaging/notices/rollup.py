"""Rollup of receipt counts per child unit, at any level of the tree (pure, no I/O).

The database answers one ``GROUP BY unit_id`` per notice; the in-memory index
maps each unit to the child of the requested unit whose subtree holds it
(pre-order numbering makes a subtree an interval, so this is one bisection
per unit). Drilling down is calling again with a child as the requested unit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from messaging.notices.model import UnitProgress
from org_tree.index import OrgIndex

logger = logging.getLogger(__name__)

__all__ = ["UnitCounts", "lowest_common_unit", "rollup"]

#: (unit_id, receipts, delivered, read, acked)
UnitCounts = tuple[int, int, int, int, int]


def lowest_common_unit(index: OrgIndex, unit_ids: Iterable[int]) -> int | None:
    """Pre-order number of the lowest unit whose subtree holds every given unit (None if none known)."""
    us = [u for u in map(index.find_unit, unit_ids) if u >= 0]
    if not us:
        return None
    a = index.common_ancestor(us)
    return a if a >= 0 else None


def _progress(index: OrgIndex, u: int, c: list[int]) -> UnitProgress:
    return UnitProgress(index.unit_id(u), index.unit_code(u), index.unit_name(u), c[0], c[1], c[2], c[3])


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
    for unit_id, n, delivered, read, acked in counts:
        u = index.find_unit(unit_id)
        if u < 0 or not index.contains(parent, u):
            elsewhere += n
            continue
        bucket = parent if u == parent else index.child_toward(parent, u)
        s = sums.setdefault(bucket, [0, 0, 0, 0])
        s[0] += n
        s[1] += delivered
        s[2] += read
        s[3] += acked
    rows = [_progress(index, b, sums[b]) for b in [parent, *kids] if b in sums]
    return tuple(rows), elsewhere
