"""The org index's look-up methods against the brute-force reference tree (hypothesis).

These are the calls messaging makes instead of reading the index's columns, so
they must agree with plain parent links whatever the numbering inside is.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.org.trees import Tree, trees
from tests.profiles import examples

SETTINGS = settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(data=st.data(), tree=trees())
def test_unit_lookups_match_reference(data: st.DataObject, tree: Tree) -> None:
    index = tree.index()
    handles = {index.unit_id(u): u for u in index.units()}
    assert set(handles) == set(tree.units)
    top_id = data.draw(st.sampled_from(sorted(tree.units)))
    top = handles[top_id]
    below = tree.subtree(top_id)
    depth = data.draw(st.none() | st.integers(0, 5))
    level = tree.units[top_id][1]
    expected = {u for u in below if depth is None or tree.units[u][1] - level <= depth}
    assert {index.unit_id(v) for v in index.subtree(top, depth)} == expected
    kids = [u for u, (p, _lv, _c) in tree.units.items() if p == top_id]
    assert sorted(index.unit_id(c) for c in index.children(top)) == sorted(kids)
    for uid in tree.units:
        u = handles[uid]
        assert index.contains(top, u) == (uid in below)
        assert index.parent(u) == (handles[tree.units[uid][0]] if tree.units[uid][0] is not None else -1)
        assert index.unit_level(u) == tree.units[uid][1]
        child = index.child_toward(top, u)
        if uid == top_id or uid not in below:
            assert child == -1
        else:
            assert index.unit_id(child) in kids
            assert uid in tree.subtree(index.unit_id(child))
        assert index.find_unit(uid) == u
    assert index.find_unit(max(tree.units) + 1000) == -1
    group = data.draw(st.lists(st.sampled_from(sorted(tree.units)), min_size=1, max_size=5))
    lca = index.common_ancestor(handles[g] for g in group)
    common = set.intersection(*({g, *tree.ancestors(g)} for g in group))
    deepest = max(common, key=lambda c: tree.units[c][1])
    assert index.unit_id(lca) == deepest
    assert index.common_ancestor([]) == -1


@SETTINGS
@given(tree=trees())
def test_position_lookups_match_reference(tree: Tree) -> None:
    index = tree.index()
    assert index.position_count() == len(tree.positions)
    for pid, (uid, rid) in tree.positions.items():
        k = index.slot(pid)
        assert index.find_slot(pid) == k and index.position_id(k) == pid
        assert index.unit_id(index.position_unit(k)) == uid
        assert index.position_role_id(k) == rid == index.position_role(k).id
        assert index.role_and_unit(pid) == (rid, index.position_unit(k))
        everyone = {person for p, person, _kind in tree.holders if p == pid}
        assert index.current_holders(k) == everyone
        for person in range(1, 26):
            assert index.holds(person, pid) == (person in everyone)
        first = min((p for p, (u, r) in tree.positions.items() if u == uid and r == rid), default=None)
        assert index.position_id(index.role_slot(index.position_unit(k), rid)) == first
    assert index.find_slot(10**9) == -1 and not index.holds(1, 10**9)
    assert index.role_and_unit(10**9) is None
