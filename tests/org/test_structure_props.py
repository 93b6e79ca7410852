"""Structural edits patched into the index answer exactly like a fresh build of the edited tree (hypothesis).

Random trees, random sequences of unit creates, moves, retirements and merges,
position creates and retirements and role changes: after each sequence every
look-up, selector and resolution of the patched index agrees with an index built
from scratch and with the brute-force reference model in ``tests/org/trees.py``.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from org_tree.index import OrgIndex
from org_tree.index_load import role_info
from org_tree.resolution import VacancyPolicy, evaluate, resolve
from tests.org.trees import ROLES, Tree, selectors_for, trees
from tests.profiles import examples

SETTINGS = settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPS = st.sampled_from(["add_unit", "move", "retire", "merge", "add_position", "retire_position", "role", "holders"])


def _apply(index: OrgIndex, tree: Tree, data: st.DataObject, next_ids: dict[str, int]) -> None:
    op = data.draw(OPS, label="op")
    units = sorted(tree.units)
    if op == "add_unit":
        parents = [u for u in units if tree.units[u][1] < 6]
        if not parents:
            return
        p = data.draw(st.sampled_from(parents), label="parent")
        uid = next_ids["unit"] = next_ids["unit"] + 1
        code = f"{tree.units[p][2]}n{uid}"
        tree.units[uid] = (p, tree.units[p][1] + 1, code)
        index.add_unit(uid, index.unit(p), tree.units[p][1] + 1, code, f"单位{uid}")
    elif op == "move":
        movable = [u for u in units if tree.units[u][0] is not None]
        if not movable:
            return
        u = data.draw(st.sampled_from(movable), label="unit")
        level = tree.units[u][1]
        targets = [p for p in units if tree.units[p][1] == level - 1 and p != tree.units[u][0]]
        if not targets:
            return
        p = data.draw(st.sampled_from(targets), label="to")
        tree.units[u] = (p, level, tree.units[u][2])
        index.move_unit(index.unit(u), index.unit(p))
    elif op == "retire":
        movable = [u for u in units if tree.units[u][0] is not None]
        if not movable:
            return
        u = data.draw(st.sampled_from(movable), label="unit")
        gone = tree.subtree(u)
        for v in gone:
            del tree.units[v]
        dropped = {p for p, (v, _r) in tree.positions.items() if v in gone}
        tree.positions = {p: v for p, v in tree.positions.items() if p not in dropped}
        tree.holders = [h for h in tree.holders if h[0] not in dropped]
        assert sorted(index.retire_unit(index.unit(u))) == sorted(dropped)
    elif op == "merge":
        pairs = [(a, b) for a in units for b in units if a != b and tree.units[a][1] == tree.units[b][1]]
        pairs = [(a, b) for a, b in pairs if tree.units[a][0] is not None]
        if not pairs:
            return
        a, b = data.draw(st.sampled_from(pairs), label="merge")
        for v, (p, lv, code) in list(tree.units.items()):
            if p == a:
                tree.units[v] = (b, lv, code)
        tree.positions = {p: ((b, r) if v == a else (v, r)) for p, (v, r) in tree.positions.items()}
        del tree.units[a]
        index.merge_units(index.unit(a), index.unit(b))
    elif op == "add_position":
        u = data.draw(st.sampled_from(units), label="unit")
        level = tree.units[u][1]
        roles = [r[0] for r in ROLES if str(level) in r[3].split(",")]
        if not roles:
            return
        rid = data.draw(st.sampled_from(roles), label="role")
        pid = next_ids["position"] = next_ids["position"] + 1
        tree.positions[pid] = (u, rid)
        index.add_position(pid, index.unit(u), rid)
    elif op == "retire_position":
        if not tree.positions:
            return
        pid = data.draw(st.sampled_from(sorted(tree.positions)), label="position")
        del tree.positions[pid]
        tree.holders = [h for h in tree.holders if h[0] != pid]
        assert index.retire_position(pid)
    elif op == "role":
        rid = data.draw(st.sampled_from([r[0] for r in ROLES]), label="role")
        row = next(r for r in ROLES if r[0] == rid)
        index.set_role(role_info((rid, row[1], f"{row[2]}改", row[3], row[4], row[5], row[6])))
        assert index.role_id(f"{row[2]}改") == rid and index.role_id(row[1]) == rid
        assert row[2] not in index.role_by_name
        index.set_role(role_info(row))  # and back, so the reference (which knows the catalog names) still applies
    else:
        if not tree.positions:
            return
        pid = data.draw(st.sampled_from(sorted(tree.positions)), label="position")
        person = data.draw(st.integers(1, 25), label="person")
        tree.holders = [h for h in tree.holders if not (h[0] == pid and h[2] == "primary")]
        tree.holders.append((pid, person, "primary"))
        alts = [(p, k) for q, p, k in tree.holders if q == pid and k != "primary"]
        index.patch_holders({pid: ([person], alts)}, index.version + 1)


def _audience(index: OrgIndex, sel: object) -> tuple[Counter[tuple[int, int, int, int]], dict[int, str]]:
    aud = resolve(index, sel, VacancyPolicy())  # type: ignore[arg-type]
    entries = Counter(zip(aud.person_ids, aud.position_ids, aud.via_position_ids, aud.reason_codes, strict=True))
    return entries, {f.position_id: f.reason for f in aud.fallbacks}


def _compare(patched: OrgIndex, tree: Tree, data: st.DataObject) -> None:
    fresh = tree.index()
    for index in (patched,):
        assert {index.unit_id(u) for u in index.units()} == set(tree.units)
        assert index.unit_count() == len(tree.units) and index.position_count() == len(tree.positions)
        for uid, (p, level, code) in tree.units.items():
            u = index.unit(uid)
            assert index.unit(code) == u
            assert index.unit_level(u) == level
            assert (index.unit_id(index.parent(u)) if index.parent(u) >= 0 else None) == p
            assert [index.unit_id(c) for c in index.children(u)] == [
                fresh.unit_id(c) for c in fresh.children(fresh.unit(uid))
            ]
            assert {index.unit_id(v) for v in index.subtree(u)} == tree.subtree(uid)
            assert sorted(index.position_id(k) for k in index.unit_slots(u)) == sorted(
                fresh.position_id(k) for k in fresh.unit_slots(fresh.unit(uid))
            )
            h, fh = index.head_slot(u), fresh.head_slot(fresh.unit(uid))
            assert (index.position_id(h) if h >= 0 else None) == (fresh.position_id(fh) if fh >= 0 else None)
            for vid in tree.units:
                assert index.contains(u, index.unit(vid)) == (vid in tree.subtree(uid))
        for pid, (uid, rid) in tree.positions.items():
            k = index.slot(pid)
            assert index.position_id(k) == pid and index.unit_id(index.position_unit(k)) == uid
            assert index.position_role_id(k) == rid
            assert index.current_holders(k) == fresh.current_holders(fresh.slot(pid))
    for _ in range(3):
        sel = data.draw(selectors_for(tree), label="selector")
        want = tree.addressed(sel)
        got = {patched.position_id(k) for a, b in evaluate(patched, sel) for k in range(a, b)}
        assert got == want
        assert _audience(patched, sel) == _audience(fresh, sel)


@SETTINGS
@given(data=st.data(), tree=trees(max_units=30))
def test_patched_index_answers_like_a_fresh_build(data: st.DataObject, tree: Tree) -> None:
    index = tree.index()
    next_ids = {"unit": max(tree.units) + 100, "position": max(tree.positions, default=100) + 100}
    for _ in range(data.draw(st.integers(1, 12), label="steps")):
        _apply(index, tree, data, next_ids)
    _compare(index, tree, data)


def test_many_inserts_under_one_unit_renumber_locally() -> None:
    """Gaps run out under a village that keeps getting grids: a local renumber, and answers stay right."""
    tree = Tree()
    tree.units = {1: (None, 1, "1"), 2: (1, 2, "101"), 3: (2, 3, "10101"), 4: (2, 3, "10102")}
    for uid in range(5, 9):
        tree.units[uid] = (3 if uid < 7 else 4, 4, f"x{uid}")
    index = tree.index()
    grid = 200
    for village in range(100, 140):
        township = 5 + village % 4
        tree.units[village] = (township, 5, f"v{village}")
        index.add_unit(village, index.unit(township), 5, f"v{village}", "村")
        for _ in range(5):
            grid += 1
            tree.units[grid] = (village, 6, f"g{grid}")
            index.add_unit(grid, index.unit(village), 6, f"g{grid}", "网格")
            tree.positions[grid] = (grid, 4)
            index.add_position(grid, index.unit(grid), 4)
    assert index.relabels > 0
    for uid in tree.units:
        u = index.unit(uid)
        assert {index.unit_id(v) for v in index.subtree(u)} == tree.subtree(uid)
        for vid in (1, 3, 6, 120, 300):
            if vid in tree.units:
                assert index.contains(u, index.unit(vid)) == (vid in tree.subtree(uid))
    for township in range(5, 9):
        got = {index.position_id(k) for a, b in index.role_under(4, index.unit(township), None) for k in range(a, b)}
        assert got == {p for p, (u, _r) in tree.positions.items() if u in tree.subtree(township)}


def test_back_and_forth_moves_renumber_once_not_every_time() -> None:
    """A township moved between two counties over and over: the labels it gives back are kept by later renumbers."""
    tree = Tree()
    tree.units = {1: (None, 1, "1"), 2: (1, 2, "101"), 3: (2, 3, "10101"), 4: (2, 3, "10102")}
    uid = 10
    for county in (3, 4):
        for t in range(3):
            uid += 1
            township = uid
            tree.units[township] = (county, 4, f"{county}{t}")
            for v in range(12):
                uid += 1
                tree.units[uid] = (township, 5, f"{county}{t}{v:02d}")
    index = tree.index()
    moving = index.unit(11)  # a township of county 3 with 12 villages: more than a county's spare labels
    for i in range(8):
        index.move_unit(moving, index.unit(4 if i % 2 == 0 else 3))
        tree.units[11] = (4 if i % 2 == 0 else 3, 4, "30")
    assert index.relabels <= 2  # one renumber per county at most, then the given-back labels fit (8 before)
    for u in tree.units:
        assert {index.unit_id(v) for v in index.subtree(index.unit(u))} == tree.subtree(u)
