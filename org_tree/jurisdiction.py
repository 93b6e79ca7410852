"""Jurisdiction: which positions a position may address, and access-checked getters.

Why a rule per role: who may notify or task whom follows the office, not the
person. The rules (``roles.jurisdiction``):

- ``subtree``: the position's unit and everything under it (heads, secretaries);
- ``chain``: for addressing, the position's own unit's subtree, like
  ``subtree``; for *reading* the directory's private parts (assignment
  history) also the units on the path up to the root. A grid worker notifies
  her grid; she reaches her superiors through threads, tasks and reports,
  never by a notice to them (issue 10: the old rule let a grid position
  notify every ancestor unit, 省长 included);
- ``unit``: the position's own unit only;
- ``none``: nobody.

Notices and tasks go *down* the sender position's scope; upward communication
is what position threads, reports and task escalation are for (docs/admin.md).
Changing the org is not a matter of positions at all: it needs an admin grant
(``org_tree.grants``).

The check is on the *addressed* positions of a selector, after unions and
exclusions (``A - B`` is allowed when ``B`` removes the out-of-scope part).
Vacancy fallbacks only ever climb towards units the rules already cover for
the addressed position, so they are not checked again.

Each condition of the checks sits on its own line so branch coverage shows
every case is tested (docs/style.md practice 7).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from kernel.errors import ErrorCode, Forbidden, NotFound
from org_tree.grants import ALL_PERMS, Grant, Perm, holds_grant
from org_tree.index import OrgIndex
from org_tree.resolution import Ranges, _normalize, _subtract, evaluate
from org_tree.selectors import Selector, UnitRef, atoms, to_text

logger = logging.getLogger(__name__)

__all__ = [
    "SYSTEM",
    "Actor",
    "Scope",
    "access_position",
    "access_unit",
    "check_jurisdiction",
    "check_manage",
    "outside_subtrees",
    "scope_of",
]

_SAMPLE = 10


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking: a person, the positions they hold, and their admin grants (``org_tree.grants``)."""

    person_id: int
    position_ids: tuple[int, ...] = ()
    grants: tuple[Grant, ...] = ()


#: The operator at the command line (``zzd`` CLI, imports, demo seeding): every permission, whole tree.
SYSTEM = Actor(0, (), (Grant(0, 0, None, ALL_PERMS),))


@dataclass(frozen=True, slots=True)
class Scope:
    """The units a position may address: the subtree (or just the unit) of ``top``; ``ancestors``: reading only."""

    rule: str
    top: int  # unit handle, -1 for none
    depth: int | None  # 0: the unit alone, None: its whole subtree
    ancestors: frozenset[int]
    index: OrgIndex

    def contains(self, u: int) -> bool:
        if self.top >= 0 and (u == self.top or (self.depth is None and self.index.contains(self.top, u))):
            return True
        return u in self.ancestors

    def units(self) -> list[int]:
        """The addressable units (tests and the admin property model walk them)."""
        return [] if self.top < 0 else list(self.index.subtree(self.top, self.depth))


def scope_of(index: OrgIndex, position_id: int, *, reading: bool = False) -> Scope:
    """The scope of one position, from its role's rule (``NotFound`` for an unknown position).

    ``reading=True``: the wider scope for private directory reads (a ``chain``
    role also sees its ancestors' assignment history); addressing never uses it.
    """
    k = index.slot(position_id)
    u = index.position_unit(k)
    role = index.position_role(k)
    rule = role.jurisdiction
    if rule == "subtree":
        return Scope(rule, u, None, frozenset(), index)
    if rule == "chain":
        return Scope(rule, u, None, frozenset(index.ancestors(u)) if reading else frozenset(), index)
    if rule == "unit":
        return Scope(rule, u, 0, frozenset(), index)
    return Scope("none", -1, 0, frozenset(), index)


def _offending(index: OrgIndex, scope: Scope, ranges: Ranges) -> tuple[int, list[int]]:
    """Count of addressed slots outside ``scope``, and a few of them."""
    inside = _inside(index, scope, ranges)
    outside = _subtract(ranges, inside)
    count = sum(b - a for a, b in outside)
    sample: list[int] = []
    for a, b in outside:
        for k in range(a, min(b, a + _SAMPLE)):
            if len(sample) < _SAMPLE:
                sample.append(index.position_id(k))
    return count, sample


def _inside(index: OrgIndex, scope: Scope, ranges: Ranges) -> Ranges:
    """The part of ``ranges`` whose units are in ``scope`` (by bisection inside each segment)."""
    if scope.top < 0:
        return []
    allowed = index.role_under_all(scope.top) if scope.depth is None else index.slot_ranges(index.unit_slots(scope.top))
    return _subtract(ranges, _subtract(ranges, _normalize(allowed)))


def outside_subtrees(index: OrgIndex, ranges: Ranges, tops: Iterable[int]) -> tuple[int, list[int]]:
    """How many of the slots in ``ranges`` lie outside every one of the subtrees of ``tops``, and a few of them.

    For a selector bounded by units rather than by a position's role (an app's 可见范围
    must stay within the subtrees its administrators were checked over).
    """
    remaining = ranges
    for top in tops:
        remaining = _subtract(remaining, _inside(index, Scope("subtree", top, None, frozenset(), index), remaining))
    return _offending(index, Scope("none", -1, 0, frozenset(), index), remaining)


def check_jurisdiction(index: OrgIndex, actor_position_id: int, selector: Selector) -> Ranges:
    """Refuse a selector that addresses any position outside the actor position's scope.

    Returns:
        the addressed slot ranges (so the caller need not evaluate again).

    Raises:
        Forbidden: ``OUT_OF_SCOPE``, with the offending parts, their count and some position ids.
        NotFound: the selector names a unit, role or position that does not exist.
    """
    scope = scope_of(index, actor_position_id)
    ranges = evaluate(index, selector)
    count, sample = _offending(index, scope, ranges)
    if count == 0:
        return ranges
    parts = []
    for atom in atoms(selector, positive_only=True):
        own = evaluate(index, atom)
        kept = _subtract(own, _subtract(own, ranges))  # the atom's share of the final selection
        if _offending(index, scope, kept)[0]:
            parts.append(to_text(atom))
    raise Forbidden(
        f"{count} addressed position(s) are outside the jurisdiction of position {actor_position_id}",
        code=ErrorCode.OUT_OF_SCOPE,
        data={"as_position": actor_position_id, "out_of_scope": parts, "count": count, "positions": sample},
    )


def _actor_covers(index: OrgIndex, actor: Actor, u: int, *, manage: bool, above: bool = True) -> bool:
    """Reads: any grant or a reading scope covers ``u`` (``above=False``: the addressing scope, without a
    ``chain`` role's ancestors). Managing (unit groups): an org grant or a subtree role."""
    if manage and holds_grant(index, actor, Perm.ORG, u):
        return True
    if not manage and any(g.covers(index, u) for g in actor.grants):
        return True
    for pid in actor.position_ids:
        try:
            scope = scope_of(index, pid, reading=not manage and above)
        except NotFound:
            continue  # a position the actor held that no longer exists
        if manage and scope.rule != "subtree":
            continue
        if scope.contains(u):
            return True
    return False


def access_unit(
    index: OrgIndex, actor: Actor, unit: int | str | UnitRef, *, private: bool = False, above: bool = True
) -> int:
    """Load a unit for ``actor``: its pre-order number, or ``NotFound``.

    Unit names, codes and positions are the public directory; ``private=True``
    (assignment history, audience details) requires the unit to be within one of
    the actor's scopes, and answers ``NotFound`` otherwise, like a missing unit,
    so ids cannot be probed. ``above=False`` leaves out the units above a ``chain``
    role (a grid worker sees who holds the seats above them, not their figures).
    """
    ref = unit if not isinstance(unit, UnitRef) else (unit.id if unit.id is not None else str(unit.code))
    u = index.unit(ref)
    if private and not _actor_covers(index, actor, u, manage=False, above=above):
        raise NotFound("no such unit", data={"unit": ref})
    return u


def access_position(index: OrgIndex, actor: Actor, position_id: int, *, private: bool = False) -> int:
    """Load a position for ``actor``: its slot, or ``NotFound`` (also when private and out of scope)."""
    k = index.slot(position_id)
    if private and not _actor_covers(index, actor, index.position_unit(k), manage=False):
        raise NotFound("no such position", data={"position_id": position_id})
    return k


def check_manage(index: OrgIndex, actor: Actor, u: int) -> None:
    """Creating ``u``'s working group needs a ``subtree`` position above it, or an ``org`` grant over it.

    Not for changing the org: that needs a grant (``org_tree.grants.require_grant``).

    Raises:
        Forbidden: ``OUT_OF_SCOPE`` naming the unit.
    """
    if not _actor_covers(index, actor, u, manage=True):
        raise Forbidden(
            "the unit is outside your jurisdiction",
            code=ErrorCode.OUT_OF_SCOPE,
            data={"unit_id": index.unit_id(u), "unit": index.unit_name(u)},
        )
