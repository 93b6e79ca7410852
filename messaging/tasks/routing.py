"""Where a report goes and where an overdue task climbs to (pure look-ups on the org index).

Routing: the category names a role and a level, e.g. 河道垃圾 → ``river_chief``
at ``village``: walk up from the reporter's grid to the unit of that level and
take that unit's position of the role. A report beyond the grid's capacity
starts one escalation step higher.

Escalation: ``same_role_up`` takes the same role in the nearest unit above
that has it (village 河长 → township 河长); ``head_above`` takes the head of the
nearest unit above that has one (综合执法队长 of a township → 区县长). When the
rule finds nothing the other rule is tried, so a task never dead-ends below
the root while someone above could take it.
"""

from __future__ import annotations

import logging

from kernel.errors import BadRequest, ErrorCode, NotFound
from messaging.tasks.categories import Category
from org_tree.divisions import Level
from org_tree.index import OrgIndex

logger = logging.getLogger(__name__)

__all__ = ["escalation_target", "route_report", "unit_at_level"]


def unit_at_level(index: OrgIndex, u: int, level: int) -> int:
    """``u`` or its ancestor at ``level``; -1 if ``u`` is above that level."""
    if index.unit_level(u) == level:
        return u
    for a in index.ancestors(u):
        if index.unit_level(a) == level:
            return a
    return -1


def route_report(index: OrgIndex, category: Category, grid_u: int, *, beyond_capacity: bool) -> tuple[int, int]:
    """The slot of the position responsible for a report from ``grid_u``, and the escalation level.

    Raises:
        BadRequest: ``UNKNOWN_CATEGORY`` when the category takes no reports.
        NotFound: the tree has no position of the routed role in that unit.
    """
    if category.route_role is None or category.route_level is None:
        raise BadRequest(
            f"category {category.key} does not take reports",
            code=ErrorCode.UNKNOWN_CATEGORY,
            data={"category": category.key},
        )
    role_id = index.role_id(category.route_role)
    u = unit_at_level(index, grid_u, int(Level.parse(category.route_level)))
    k = index.role_slot(u, role_id) if u >= 0 else -1
    if k < 0:
        raise NotFound(
            f"no {category.route_role} position at {category.route_level} level above this grid",
            data={"category": category.key, "role": category.route_role, "level": category.route_level},
        )
    if beyond_capacity:
        up = escalation_target(index, category.escalation, k)
        if up >= 0:
            return up, 1
    return k, 0


def _same_role_up(index: OrgIndex, k: int) -> int:
    return index.superior_slot(k)


def _head_above(index: OrgIndex, k: int) -> int:
    for a in index.ancestors(index.position_unit(k)):
        h = index.head_slot(a)
        if h >= 0:
            return h
    return -1


def escalation_target(index: OrgIndex, rule: str, k: int) -> int:
    """The slot a task owned by slot ``k`` escalates to under ``rule`` (the other rule as fallback), or -1."""
    order = (_same_role_up, _head_above) if rule == "same_role_up" else (_head_above, _same_role_up)
    for find in order:
        t = find(index, k)
        if t >= 0 and t != k:
            return t
    return -1
