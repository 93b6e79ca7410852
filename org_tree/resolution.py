"""Resolution: selector → positions → current holders, with the vacancy fallback.

Why it is built on slot ranges: a selector such as "every 专职网格员 in the
province" is one contiguous range of slots in the index, and the primary
holders of a range are one contiguous slice of the holder columns. Only the
few *special* slots (vacant, or patched since the last rebuild) are handled one
by one, which is where the vacancy policy applies.

Vacancy policy (``VacancyPolicy``, configurable): a position without a
primary holder is received, in order of the configured steps, by

1. ``deputy`` — its acting and deputy holders (acting first);
2. ``unit_head`` — the holders of its unit's head position;
3. ``superior`` — the holders of the same role in the nearest unit above
   (climbing further while that is vacant, up to ``max_hops``).

The first step that finds anyone wins; if none does the position is reported
as unfilled. The result (``Audience``) is a frozen value: later changes to the
tree do not change who a sent notice was addressed to, so receipts are
counted against it.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from org_tree.index import OrgIndex
from org_tree.selectors import (
    Exclude,
    HeadOf,
    PositionSel,
    RoleIn,
    RoleUnder,
    Selector,
    SuperiorOf,
    Union,
    UnitAll,
    UnitRef,
)

logger = logging.getLogger(__name__)

__all__ = [
    "REASONS",
    "Audience",
    "Fallback",
    "Ranges",
    "VacancyPolicy",
    "evaluate",
    "resolve",
    "resolve_ranges",
    "resolve_slots",
    "unit_of_ref",
]

Ranges = list[tuple[int, int]]  # sorted, disjoint, non-empty [start, end) slot ranges
STEPS = ("deputy", "unit_head", "superior")


@dataclass(frozen=True, slots=True)
class VacancyPolicy:
    """Who receives for a vacant position; ``steps`` is an ordered subset of ``STEPS``."""

    steps: tuple[str, ...] = STEPS
    max_hops: int = 6

    def __post_init__(self) -> None:
        unknown = set(self.steps) - set(STEPS)
        if unknown:
            raise ValueError(f"unknown vacancy steps {sorted(unknown)}")


@dataclass(frozen=True, slots=True)
class Fallback:
    """A vacant addressed position and who stood in (``via_position_id`` None: nobody)."""

    position_id: int
    reason: str  # deputy | acting | unit_head | superior | unfilled
    via_position_id: int | None


REASONS = ("holder", "deputy", "acting", "unit_head", "superior")
_CODE = {r: i for i, r in enumerate(REASONS)}


def _frozen(values: array[int]) -> Sequence[int]:
    """A read-only, zero-copy view of an array we own: immutable without boxing every id."""
    return memoryview(values).toreadonly()  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Audience:
    """The frozen outcome of one resolution.

    ``person_ids[i]`` receives for addressed position ``position_ids[i]``, through
    ``via_position_ids[i]`` (the position they hold), for ``reasons[i]``. The id
    columns are read-only views (index them, iterate them, ``len`` them; ``tuple()``
    them when a copy is wanted): a province-wide audience is 10⁵ entries and boxing
    each id into a tuple would cost more than the resolution itself.
    """

    version: int
    positions: Sequence[int]  # every addressed position, in slot order
    person_ids: Sequence[int]
    position_ids: Sequence[int]
    via_position_ids: Sequence[int]
    reason_codes: Sequence[int]  # index into REASONS
    fallbacks: tuple[Fallback, ...] = field(default=())

    @cached_property
    def reasons(self) -> tuple[str, ...]:
        return tuple(REASONS[c] for c in self.reason_codes)

    @cached_property
    def persons(self) -> frozenset[int]:
        return frozenset(self.person_ids)

    @cached_property
    def by_person(self) -> dict[int, tuple[int, ...]]:
        """Person → the addressed positions through which they receive (no duplicates)."""
        out: dict[int, list[int]] = {}
        for person, pos in zip(self.person_ids, self.position_ids, strict=True):
            lst = out.setdefault(person, [])
            if pos not in lst:
                lst.append(pos)
        return {p: tuple(v) for p, v in out.items()}

    @property
    def unfilled(self) -> tuple[int, ...]:
        return tuple(f.position_id for f in self.fallbacks if f.reason == "unfilled")


# ------------------------------------------------------------------ ranges
def _normalize(ranges: list[tuple[int, int]]) -> Ranges:
    out: Ranges = []
    for a, b in sorted(r for r in ranges if r[0] < r[1]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _subtract(base: Ranges, minus: Ranges) -> Ranges:
    out: Ranges = []
    j = 0
    for a, b in base:
        cur = a
        while j < len(minus) and minus[j][1] <= cur:
            j += 1
        k = j
        while k < len(minus) and minus[k][0] < b:
            if minus[k][0] > cur:
                out.append((cur, minus[k][0]))
            cur = max(cur, minus[k][1])
            k += 1
        if cur < b:
            out.append((cur, b))
    return out


def _slots(slots: list[int]) -> Ranges:
    return _normalize([(k, k + 1) for k in slots if k >= 0])


def unit_of_ref(index: OrgIndex, ref: UnitRef) -> int:
    """Pre-order number of a referenced unit (``NotFound`` if missing)."""
    return index.unit(ref.id if ref.id is not None else str(ref.code))


def evaluate(index: OrgIndex, sel: Selector) -> Ranges:
    """The slots a selector addresses, as sorted disjoint ranges.

    Raises:
        NotFound: a referenced unit, role or position does not exist.
    """
    if isinstance(sel, Union):
        return _normalize([r for item in sel.items for r in evaluate(index, item)])
    if isinstance(sel, Exclude):
        return _subtract(evaluate(index, sel.base), evaluate(index, sel.minus))
    if isinstance(sel, PositionSel):
        return _slots([index.slot(sel.position_id)])
    if isinstance(sel, HeadOf):
        k = index.slot(sel.position_id)
        return _slots([index.head_slot(index.position_unit(k))])
    if isinstance(sel, SuperiorOf):
        return _slots([index.superior_slot(index.slot(sel.position_id))])
    if isinstance(sel, UnitAll):
        return _slots(list(index.unit_slots(unit_of_ref(index, sel.unit))))
    if isinstance(sel, RoleIn):
        u = unit_of_ref(index, sel.unit)
        return _slots([k for k in index.unit_slots(u) if index.position_role_id(k) == index.role_id(sel.role)])
    if not isinstance(sel, RoleUnder):
        raise TypeError(f"not a selector: {sel!r}")
    u = unit_of_ref(index, sel.unit)
    levels = [int(lv) for lv in sel.levels] if sel.levels is not None else None
    return _normalize(index.role_under(index.role_id(sel.role), u, levels))


def resolve(index: OrgIndex, sel: Selector, policy: VacancyPolicy | None = None) -> Audience:
    """Resolve a selector against one index snapshot into a frozen ``Audience``."""
    return resolve_ranges(index, evaluate(index, sel), policy or VacancyPolicy())


def resolve_slots(index: OrgIndex, slots: Sequence[int], policy: VacancyPolicy) -> Audience:
    """Resolve the given slots (e.g. a task owner's position) with the vacancy fallback."""
    return resolve_ranges(index, index.slot_ranges(slots), policy)


def resolve_ranges(index: OrgIndex, ranges: Ranges, policy: VacancyPolicy) -> Audience:
    """Resolve already evaluated (and, where needed, jurisdiction-checked) slot ranges."""
    persons = array("q")
    addressed = array("q")
    codes = array("b")
    patches: list[tuple[int, int]] = []  # (entry index, via position) where via ≠ addressed
    fallbacks: list[Fallback] = []
    h_one, p_id, special = index._h_one, index._p_id, index._special
    all_positions = array("q")
    for a, b in ranges:
        all_positions.extend(p_id[a:b])
        cur = a
        while True:
            nxt = special.find(1, cur, b)  # memchr: the next vacant, pooled or multi-holder slot
            if nxt < 0:
                nxt = b
            if cur < nxt:  # a run of ordinary slots: one slice
                persons.extend(h_one[cur:nxt])
                addressed.extend(p_id[cur:nxt])
                codes.frombytes(bytes(nxt - cur))  # code 0 = holder
            if nxt >= b:
                break
            got, via_pos, got_codes, fallback = _special(index, nxt, policy)
            if via_pos is not None:
                patches.extend((len(persons) + i, via_pos) for i in range(len(got)))
            persons.extend(got)
            addressed.extend([p_id[nxt]] * len(got))
            codes.extend(got_codes)
            if fallback is not None:
                fallbacks.append(fallback)
            cur = nxt + 1
    via = array("q", addressed)
    for i, pos in patches:
        via[i] = pos
    return Audience(
        version=index.version,
        positions=_frozen(all_positions),
        person_ids=_frozen(persons),
        position_ids=_frozen(addressed),
        via_position_ids=_frozen(via),
        reason_codes=_frozen(codes),
        fallbacks=tuple(fallbacks),
    )


# (persons, via position when not the addressed one, reason code per person, fallback record)
_Outcome = tuple[tuple[int, ...], int | None, tuple[int, ...], Fallback | None]


def _special(index: OrgIndex, k: int, policy: VacancyPolicy) -> _Outcome:
    """Who receives for a vacant or patched slot (see ``_Outcome``).

    Memoised on the index (``index._memo``), which drops the memo whenever it is patched.
    """
    key = (index._p_id[k], policy)
    hit = index._memo.get(key)
    if hit is None:
        hit = index._memo[key] = _decide(index, k, policy)
    return hit  # type: ignore[return-value]


def _decide(index: OrgIndex, k: int, policy: VacancyPolicy) -> _Outcome:
    pos_id = index._p_id[k]
    primary = index.primary_holders(k)
    if primary:  # patched, not vacant
        return primary, None, (0,) * len(primary), None
    for step in policy.steps:
        if step == "deputy":
            alts = sorted(index.alternate_holders(k), key=lambda pk: pk[1] != "acting")
            if alts:  # deputies and acting holders receive for the position itself
                people = tuple(p for p, _ in alts)
                return people, None, tuple(_CODE[kd] for _, kd in alts), Fallback(pos_id, alts[0][1], pos_id)
        elif step == "unit_head":
            h = index.head_slot(index.position_unit(k))
            if h >= 0 and h != k:
                holders = index.primary_holders(h)
                if holders:
                    fb = Fallback(pos_id, "unit_head", index._p_id[h])
                    return holders, index._p_id[h], (_CODE["unit_head"],) * len(holders), fb
        else:
            s = k
            for _ in range(policy.max_hops):
                s = index.superior_slot(s)
                if s < 0:
                    break
                holders = index.primary_holders(s)
                if holders:
                    fb = Fallback(pos_id, "superior", index._p_id[s])
                    return holders, index._p_id[s], (_CODE["superior"],) * len(holders), fb
    return (), None, (), Fallback(pos_id, "unfilled", None)
