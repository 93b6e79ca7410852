"""Preview: what a selector will reach, before anything is sent.

Why: a county office manager must see "1,032 positions held by 987 people in
98 villages" and which vacancies fell back to whom before sending a DING.
Counts are grouped per child unit of the audience's lowest common ancestor
(or of a unit the caller names) and per level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from org_tree.divisions import Level
from org_tree.index import OrgIndex
from org_tree.resolution import Audience, Fallback

logger = logging.getLogger(__name__)

__all__ = ["Preview", "UnitCount", "preview"]

MAX_FALLBACKS_LISTED = 100


@dataclass(frozen=True, slots=True)
class UnitCount:
    unit_id: int
    code: str
    name: str
    positions: int
    persons: int


@dataclass(frozen=True, slots=True)
class Preview:
    version: int
    positions: int
    persons: int
    parent_unit_id: int | None  # the unit whose children ``by_child`` lists
    by_child: tuple[UnitCount, ...]  # the parent unit itself appears first when it is addressed
    by_level: dict[str, tuple[int, int]]  # level → (positions, persons)
    fallbacks: tuple[Fallback, ...]  # at most MAX_FALLBACKS_LISTED
    fallback_count: int
    unfilled_count: int


def preview(index: OrgIndex, audience: Audience, *, under: int | None = None) -> Preview:
    """Group an audience per child unit (of ``under``, or of the audience's common ancestor) and per level."""
    units = [index.unit_of_position(pid) for pid in audience.positions]
    units = [u for u in units if u >= 0]
    if not units:
        return Preview(index.version, 0, 0, None, (), {}, (), 0, 0)
    parent = under if under is not None else index.common_ancestor(set(units))
    children = [parent, *index.children(parent)]
    pos_per: dict[int, int] = {}
    persons_per: dict[int, set[int]] = {}
    level_pos: dict[int, int] = {}
    level_persons: dict[int, set[int]] = {}

    memo: dict[int, int | None] = {}

    def bucket(u: int) -> int | None:
        if u == parent:
            return parent
        if u not in memo:
            c = index.child_toward(parent, u)
            memo[u] = c if c >= 0 else None
        return memo[u]

    for u in units:
        b = bucket(u)
        if b is not None:
            pos_per[b] = pos_per.get(b, 0) + 1
        lv = index.unit_level(u)
        level_pos[lv] = level_pos.get(lv, 0) + 1
    for person, pid in zip(audience.person_ids, audience.position_ids, strict=True):
        u = index.unit_of_position(pid)
        b = bucket(u)
        if b is not None:
            persons_per.setdefault(b, set()).add(person)
        level_persons.setdefault(index.unit_level(u), set()).add(person)
    by_child = tuple(
        UnitCount(index.unit_id(c), index.unit_code(c), index.unit_name(c), pos_per[c], len(persons_per.get(c, ())))
        for c in children
        if c in pos_per
    )
    by_level = {Level(lv).label: (level_pos[lv], len(level_persons.get(lv, ()))) for lv in sorted(level_pos)}
    fallen = [f for f in audience.fallbacks if f.reason != "unfilled"]
    return Preview(
        version=audience.version,
        positions=len(audience.positions),
        persons=len(audience.persons),
        parent_unit_id=index.unit_id(parent),
        by_child=by_child,
        by_level=by_level,
        fallbacks=tuple(audience.fallbacks[:MAX_FALLBACKS_LISTED]),
        fallback_count=len(fallen),
        unfilled_count=len(audience.fallbacks) - len(fallen),
    )
