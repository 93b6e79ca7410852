"""Resolution and jurisdiction against a brute-force reference on random trees (hypothesis)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kernel.errors import ErrorCode, Forbidden, NotFound
from org_tree.jurisdiction import check_jurisdiction
from org_tree.preview import preview
from org_tree.resolution import STEPS, VacancyPolicy, resolve
from org_tree.selectors import PositionSel, RoleUnder, UnitRef
from tests.org.trees import Tree, selectors_for, trees
from tests.profiles import examples

SETTINGS = settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
POLICIES = st.sampled_from([STEPS, ("deputy",), ("unit_head", "superior"), ("superior", "deputy"), ()])


@SETTINGS
@given(data=st.data(), tree=trees(), steps=POLICIES)
def test_resolution_matches_reference(data: st.DataObject, tree: Tree, steps: tuple[str, ...]) -> None:
    index = tree.index()
    sel = data.draw(selectors_for(tree))
    audience = resolve(index, sel, VacancyPolicy(steps=steps))
    entries, fallbacks = tree.resolve(sel, steps)
    assert set(audience.positions) == tree.addressed(sel)
    assert len(audience.positions) == len(set(audience.positions))
    got = Counter(
        zip(audience.person_ids, audience.position_ids, audience.via_position_ids, audience.reasons, strict=True)
    )
    assert got == entries
    assert {f.position_id: f.reason for f in audience.fallbacks} == fallbacks
    event(f"fallback reasons: {sorted(set(fallbacks.values()))}")
    for person, held in audience.by_person.items():
        assert set(held) == {e[1] for e in entries if e[0] == person}
    pv = preview(index, audience)
    assert pv.positions == len(audience.positions)
    assert sum(c.positions for c in pv.by_child) == pv.positions
    assert sum(p for p, _ in pv.by_level.values()) == pv.positions
    assert pv.persons == len(audience.persons)


@SETTINGS
@given(data=st.data(), tree=trees())
def test_jurisdiction_property(data: st.DataObject, tree: Tree) -> None:
    if not tree.positions:
        return
    index = tree.index()
    actor = data.draw(st.sampled_from(sorted(tree.positions)))
    sel = data.draw(selectors_for(tree))
    scope = tree.scope(actor)
    offending = {p for p in tree.addressed(sel) if tree.positions[p][0] not in scope}
    event(f"out of scope: {bool(offending)}")
    if offending:
        with pytest.raises(Forbidden) as info:
            check_jurisdiction(index, actor, sel)
        assert info.value.code == ErrorCode.OUT_OF_SCOPE
        assert info.value.data["count"] == len(offending)
        assert set(info.value.data["positions"]) <= offending
        assert info.value.data["out_of_scope"]
    else:
        check_jurisdiction(index, actor, sel)


@SETTINGS
@given(tree=trees())
def test_patched_holders_resolve_like_a_rebuild(tree: Tree) -> None:
    """Patching holders through the overlay gives the same audience as building from scratch."""
    if not tree.positions:
        return
    index = tree.index()
    root = next(u for u, v in tree.units.items() if v[0] is None)
    changed = sorted(tree.positions)[::2]
    patch = {pid: ([pid % 7 + 100], []) for pid in changed[: len(changed) // 2]}
    patch.update({pid: ([], [(200, "acting")]) for pid in changed[len(changed) // 2 :]})
    index.patch_holders(patch, 2)
    tree.holders = [h for h in tree.holders if h[0] not in patch]
    for pid, (prim, alts) in patch.items():
        tree.holders += [(pid, p, "primary") for p in prim] + [(pid, p, k) for p, k in alts]
    rebuilt = tree.index()
    for role in ("chief", "worker", "河长"):
        sel = RoleUnder(role, UnitRef(id=root))
        a, b = resolve(index, sel), resolve(rebuilt, sel)
        assert Counter(zip(a.person_ids, a.position_ids, a.reasons, strict=True)) == Counter(
            zip(b.person_ids, b.position_ids, b.reasons, strict=True)
        )


def test_unknown_references_are_not_found() -> None:
    tree = Tree()
    tree.units[1] = (None, 1, "1")
    tree.positions[5] = (1, 1)
    index = tree.index()
    with pytest.raises(NotFound):
        resolve(index, PositionSel(6))
    with pytest.raises(NotFound):
        resolve(index, RoleUnder("chief", UnitRef(code="2")))
    with pytest.raises(NotFound):
        resolve(index, RoleUnder("nobody", UnitRef(id=1)))
    assert resolve(index, PositionSel(5)).unfilled == (5,)


def test_units_under_a_dissolved_parent_are_left_out() -> None:
    tree = Tree()
    tree.units[1] = (None, 1, "1")
    tree.units[2] = (1, 2, "101")
    tree.units[3] = (99, 2, "102")  # parent 99 is dissolved (not loaded)
    tree.units[4] = (3, 3, "10201")
    index = tree.index()
    assert index.stats()["units"] == 2
    with pytest.raises(NotFound):
        index.unit("10201")
    assert index.unit_path(index.unit("101")) == ["单位1", "单位2"]
