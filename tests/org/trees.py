"""Random org trees for property tests, and a brute-force reference model of them.

The reference works on plain parent links and sets, with none of the index's
pre-order numbering, segments or bisection, so agreement is evidence.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hypothesis import strategies as st

from org_tree.divisions import Level
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

# id, key, name, levels, jurisdiction, is_head, pool
ROLES = [
    (1, "chief", "负责人", "1,2,3,4,5,6", "subtree", True, False),
    (2, "sec", "书记", "1,2,3,4,5", "subtree", False, False),
    (3, "river", "河长", "1,2,3,4,5", "subtree", False, False),
    (4, "worker", "专职网格员", "6", "chain", False, False),
    (5, "vol", "兼职网格员", "6", "chain", False, True),
    (6, "clerk", "文书", "4,5", "unit", False, False),
    (7, "mute", "观察员", "3,4,5,6", "none", False, False),
]
ROLE = {r[0]: r for r in ROLES}


@dataclass
class Tree:
    units: dict[int, tuple[int | None, int, str]] = field(default_factory=dict)  # id → (parent, level, code)
    positions: dict[int, tuple[int, int]] = field(default_factory=dict)  # id → (unit, role)
    holders: list[tuple[int, int, str]] = field(default_factory=list)  # (position, person, kind)

    def index(self) -> OrgIndex:
        unit_rows = sorted(
            ((uid, p, lv, code, f"单位{uid}") for uid, (p, lv, code) in self.units.items()), key=lambda r: r[3]
        )
        pos_rows = [(pid, u, r) for pid, (u, r) in self.positions.items()]
        return OrgIndex.build(1, ROLES, unit_rows, pos_rows, self.holders)

    # ----------------------------------------------------------- reference
    def code_of(self, uid: int) -> str:
        return self.units[uid][2]

    def ancestors(self, uid: int) -> list[int]:
        out = []
        p = self.units[uid][0]
        while p is not None:
            out.append(p)
            p = self.units[p][0]
        return out

    def subtree(self, uid: int) -> set[int]:
        return {u for u in self.units if u == uid or uid in self.ancestors(u)}

    def head(self, uid: int) -> int | None:
        heads = [(r, pid) for pid, (u, r) in self.positions.items() if u == uid and ROLE[r][5]]
        return min(heads)[1] if heads else None

    def superior(self, pid: int) -> int | None:
        unit, role = self.positions[pid]
        for a in self.ancestors(unit):
            same = [p for p, (u, r) in self.positions.items() if u == a and r == role]
            if same:
                return min(same)
        return None

    def addressed(self, sel: Selector) -> set[int]:
        if isinstance(sel, Union):
            return set().union(*(self.addressed(i) for i in sel.items))
        if isinstance(sel, Exclude):
            return self.addressed(sel.base) - self.addressed(sel.minus)
        if isinstance(sel, PositionSel):
            return {sel.position_id}
        if isinstance(sel, HeadOf):
            h = self.head(self.positions[sel.position_id][0])
            return {h} if h is not None else set()
        if isinstance(sel, SuperiorOf):
            s = self.superior(sel.position_id)
            return {s} if s is not None else set()
        uid = self.unit_of(sel.unit)
        if isinstance(sel, UnitAll):
            return {p for p, (u, _r) in self.positions.items() if u == uid}
        role = next(r[0] for r in ROLES if sel.role in (r[1], r[2]))
        if isinstance(sel, RoleIn):
            return {p for p, (u, r) in self.positions.items() if u == uid and r == role}
        sub = self.subtree(uid)
        levels = {int(lv) for lv in sel.levels} if sel.levels is not None else None
        return {
            p
            for p, (u, r) in self.positions.items()
            if r == role and u in sub and (levels is None or self.units[u][1] in levels)
        }

    def unit_of(self, ref: UnitRef) -> int:
        if ref.id is not None:
            return ref.id
        return next(u for u, v in self.units.items() if v[2] == ref.code)

    def primaries(self, pid: int) -> list[int]:
        return [person for p, person, kind in self.holders if p == pid and kind == "primary"]

    def resolve(self, sel: Selector, steps: tuple[str, ...], max_hops: int = 6) -> tuple[Counter, dict[int, str]]:
        entries: Counter = Counter()
        fallbacks: dict[int, str] = {}
        for pid in self.addressed(sel):
            prim = self.primaries(pid)
            if prim:
                entries.update((person, pid, pid, "holder") for person in prim)
                continue
            done = False
            for step in steps:
                if step == "deputy":
                    alts = [(person, kind) for p, person, kind in self.holders if p == pid and kind != "primary"]
                    alts.sort(key=lambda a: a[1] != "acting")
                    if alts:
                        entries.update((person, pid, pid, kind) for person, kind in alts)
                        fallbacks[pid] = alts[0][1]
                        done = True
                elif step == "unit_head":
                    h = self.head(self.positions[pid][0])
                    if h is not None and h != pid and self.primaries(h):
                        entries.update((person, pid, h, "unit_head") for person in self.primaries(h))
                        fallbacks[pid] = "unit_head"
                        done = True
                else:
                    s: int | None = pid
                    for _ in range(max_hops):
                        s = self.superior(s)  # type: ignore[arg-type]
                        if s is None:
                            break
                        if self.primaries(s):
                            entries.update((person, pid, s, "superior") for person in self.primaries(s))
                            fallbacks[pid] = "superior"
                            done = True
                            break
                if done:
                    break
            if not done:
                fallbacks[pid] = "unfilled"
        return entries, fallbacks

    def scope(self, pid: int) -> set[int]:
        unit, role = self.positions[pid]
        rule = ROLE[role][4]
        if rule == "subtree":
            return self.subtree(unit)
        if rule == "chain":  # addressing goes down only (issue 10): ancestors are not in scope
            return self.subtree(unit)
        if rule == "unit":
            return {unit}
        return set()


@st.composite
def trees(draw: st.DrawFn, max_units: int = 40, depth_first: bool = False) -> Tree:
    """A random tree; ``depth_first`` grows branches down to grids before widening (small trees reach level 6)."""
    tree = Tree()
    ids = draw(st.permutations(list(range(1, max_units + 1))))
    next_id = iter(ids)
    root = next(next_id)
    tree.units[root] = (None, 1, "1")
    frontier = [root]
    while frontier and len(tree.units) < max_units:
        parent = frontier.pop() if depth_first else frontier.pop(0)
        _, level, code = tree.units[parent]
        if level >= 6:
            continue
        for i in range(draw(st.integers(0 if level > 1 else 1, 3))):
            if len(tree.units) >= max_units:
                break
            uid = next(next_id)
            tree.units[uid] = (parent, level + 1, f"{code}{i + 1:02d}")
            frontier.append(uid)
    pid = 100
    for uid, (_p, level, _c) in sorted(tree.units.items()):
        for rid, _k, _n, levels, _j, _h, pool in ROLES:
            if str(level) not in levels.split(","):
                continue
            for _ in range(draw(st.integers(0, 2))):
                pid += draw(st.integers(1, 3))
                tree.positions[pid] = (uid, rid)
                for _ in range(draw(st.integers(0, 3 if pool else 1))):
                    tree.holders.append((pid, draw(st.integers(1, 25)), "primary"))
                for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0):
                    tree.holders.append((pid, draw(st.integers(1, 25)), draw(st.sampled_from(["deputy", "acting"]))))
    return tree


def selectors_for(tree: Tree) -> st.SearchStrategy[Selector]:
    units = sorted(tree.units)
    unit_refs = st.sampled_from(units).flatmap(
        lambda u: st.sampled_from([UnitRef(code=tree.code_of(u)), UnitRef(id=u)])
    )
    roles = st.sampled_from([r[1] for r in ROLES] + [r[2] for r in ROLES])
    levels = st.none() | st.sets(st.sampled_from(list(Level)), min_size=1).map(lambda s: tuple(sorted(s)))
    parts: list[st.SearchStrategy[Selector]] = [
        st.builds(RoleIn, roles, unit_refs),
        st.builds(RoleUnder, roles, unit_refs, levels),
        st.builds(UnitAll, unit_refs),
    ]
    if tree.positions:
        pids = st.sampled_from(sorted(tree.positions))
        parts += [st.builds(PositionSel, pids), st.builds(HeadOf, pids), st.builds(SuperiorOf, pids)]
    atom = st.one_of(*parts)
    return st.recursive(
        atom,
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: Union(tuple(xs))),
            st.builds(Exclude, inner, inner),
        ),
        max_leaves=5,
    )
