"""找岗位 against a brute-force reference of docs/directory.md's rules, on random trees (issue 18).

The reference asks every position, term by term, whether the term matches its
role, its unit or a unit above, or a current holder, and ranks by the
documented key; the search under test uses n-gram postings, slot ranges, a
level-by-level pick of units and, for later terms, a per-slot scope. They
must agree on the total and on every page, including after live renames
(names added to the postings after the build).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from org_tree.directory import Directory
from org_tree.index import OrgIndex
from org_tree.name_index import Names, pinyin_fast
from org_tree.search import search
from tests.org.trees import ROLE, ROLES, Tree, trees
from tests.profiles import examples

Key = tuple[int, int, int]
UNIT_CHARS = "柯城区村东"
PERSON_NAMES = ["张三", "张三丰", "李四", "王伟", "王伟华", "赵六", "张伟", "李", "Anna", "周晓岚"]


def _fields_match(term: str, values: tuple[str, ...], pinyin_values: tuple[str, ...]) -> int | None:
    """0 exact, 1 contained, None: the directory's rule for a name and its pinyin/initials."""
    folded = term.lower()
    pinyin_too = folded == term or folded.isascii()
    if term in values or (pinyin_too and folded in pinyin_values):
        return 0
    if any(term in v for v in values) or (pinyin_too and any(folded in v for v in pinyin_values)):
        return 1
    return None


class Reference:
    def __init__(self, tree: Tree, unit_names: dict[int, str], person_names: dict[int, str]) -> None:
        self.tree, self.unit_names, self.person_names = tree, unit_names, person_names

    def _name(self, name: str, term: str) -> int | None:
        return _fields_match(term, (name,), pinyin_fast(name))

    def term_key(self, pid: int, term: str) -> Key | None:
        unit, rid = self.tree.positions[pid]
        level = self.tree.units[unit][1]
        keys: list[Key] = []
        _id, key, name, *_ = ROLE[rid]
        full, ini = pinyin_fast(name)
        fields = (name, key, full, ini)
        folded = term.lower()
        if any(term in f or folded in f for f in fields):
            keys.append((0 if term in fields or folded in fields else 1, 0, level))
        chain = [unit, *self.tree.ancestors(unit)]
        if term.isdigit():
            matched = {u: 0 for u in chain if self.tree.code_of(u) == term}
        else:
            matched = {u: m for u in chain if (m := self._name(self.unit_names[u], term)) is not None}
        exact = [u for u in chain if matched.get(u) == 0]
        if exact:  # the highest exact unit (its subtree's own matches are skipped)
            keys.append((0, level - self.tree.units[exact[-1]][1], level))
        elif matched:
            top = [u for u in chain if u in matched][-1]
            keys.append((1, level - self.tree.units[top][1], level))
        for pos, person, _kind in self.tree.holders:
            if pos == pid and person in self.person_names:
                m = self._name(self.person_names[person], term)
                if m is not None:
                    keys.append((m, 0, level))
        return min(keys) if keys else None

    def ranked(self, index: OrgIndex, query: str) -> list[int]:
        out: list[tuple[Key, int, int]] = []
        for pid in self.tree.positions:
            keys = [self.term_key(pid, t) for t in query.split()]
            if any(k is None for k in keys):
                continue
            ks = [k for k in keys if k is not None]
            key = (sum(k[0] for k in ks), max(k[1] for k in ks), max(k[2] for k in ks))
            out.append((key, index.find_slot(pid), pid))
        return [pid for _key, _slot, pid in sorted(out)]


def _directory(index: OrgIndex, tree: Tree, unit_names: dict[int, str], person_names: dict[int, str]) -> Directory:
    d = Directory(index)
    d._build_units(index.unit_columns())
    held = sorted({(person, pos) for pos, person, _k in tree.holders})
    d._build_persons(sorted(person_names.items()), held)
    return d


def _terms(tree: Tree, unit_names: dict[int, str], person_names: dict[int, str]) -> list[str]:
    words = [*unit_names.values(), *person_names.values(), *(r[2] for r in ROLES)]
    out = {r[1] for r in ROLES} | {tree.code_of(u) for u in tree.units}
    for w in words:
        for form in (w, *pinyin_fast(w)):
            out.update(form[i:j] for i in range(len(form)) for j in range(i + 1, min(len(form), i + 4) + 1))
            out.add(form.upper())
    out.update({"zz", "sz", "no-such", "9"})
    return sorted(t for t in out if t.strip() == t and t)


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), tree=trees(max_units=24, depth_first=True))
def test_search_agrees_with_the_reference(data: st.DataObject, tree: Tree) -> None:
    unit_names = {u: data.draw(st.text(UNIT_CHARS, min_size=1, max_size=4)) for u in tree.units}
    persons = sorted({person for _pos, person, _kind in tree.holders})
    person_names = {p: data.draw(st.sampled_from(PERSON_NAMES)) for p in persons}
    unit_rows = sorted(((u, p, lv, code, unit_names[u]) for u, (p, lv, code) in tree.units.items()),
                       key=lambda r: r[3])  # fmt: skip
    index = OrgIndex.build(1, ROLES, unit_rows, [(pid, u, r) for pid, (u, r) in tree.positions.items()],
                           tree.holders)  # fmt: skip
    d = _directory(index, tree, unit_names, person_names)
    for u in data.draw(st.lists(st.sampled_from(sorted(tree.units)), max_size=3)):  # live renames
        unit_names[u] = data.draw(st.text(UNIT_CHARS, min_size=1, max_size=4))
        d.set_unit_name(index.unit(u), unit_names[u], tree.units[u][1])
    for p in data.draw(st.lists(st.sampled_from(persons), max_size=2)) if persons else ():
        person_names[p] = data.draw(st.sampled_from([*PERSON_NAMES, "柯三", "金伟"]))
        d.set_person_name(p, person_names[p])
    ref = Reference(tree, unit_names, person_names)
    terms = _terms(tree, unit_names, person_names)
    roles = [r[2] for r in ROLES] + [r[1] for r in ROLES]
    for _ in range(8):
        first = data.draw(st.sampled_from(roles) | st.sampled_from(terms))  # a role first: later terms get scoped
        query = " ".join([first, *data.draw(st.lists(st.sampled_from(terms), max_size=2))])
        expected = ref.ranked(index, query)
        got: list[int] = []
        limit = data.draw(st.integers(1, 9))
        while True:
            total, slots, truncated = search(index, d, query, offset=len(got), limit=limit)
            assert total == len(expected), query
            assert not truncated
            got.extend(index.position_id(k) for k in slots)
            if len(slots) < limit:
                break
        assert got == expected, query


def test_exact_names_are_never_lost_to_the_cap() -> None:
    names = Names([f"张{chr(0x4E00 + i)}" for i in range(50)] + ["张"])
    found = names.find("张", 10)
    assert found[0] == (50, True) and len(found) == 10
    assert [nid for nid, _ in found[1:]] == list(range(9))  # then the first by id
    assert names.find("zhang", 3)[0] == (50, True)


def test_names_added_after_the_build_are_found_by_every_form() -> None:
    names = Names(["张三", "李四"])
    nid = names.add("周晓岚")
    assert names.add("周晓岚") == nid
    for term in ("周晓岚", "晓", "zhouxiaolan", "xiaol", "zxl", "ZXL"):
        assert (nid, term.lower() in ("周晓岚", "zhouxiaolan", "zxl")) in names.find(term, 10), term
    assert names.find("sz", 10) == [] and names.find("no-such", 10) == []


def test_depth_counts_from_the_highest_exact_unit_whichever_term_is_scoped(monkeypatch: object) -> None:
    """A partial match above an exact one does not set the depth: the exact one does (docs/directory.md)."""
    import org_tree.search as search_module

    units = [  # id, parent, level, code, name: 柯城区 contains 柯城; the exact 柯城 are at levels 2 and 4
        (1, None, 1, "1", "柯城区"),
        (2, 1, 2, "101", "柯城"), (3, 2, 3, "10101", "东"), (4, 3, 4, "1010101", "东"),
        (5, 1, 2, "102", "东"), (6, 5, 3, "10201", "东"), (7, 6, 4, "1020101", "柯城"), (8, 7, 5, "102010101", "东"),
    ]  # fmt: skip
    index = OrgIndex.build(1, ROLES, units, [(10, 4, 3), (11, 8, 3)], [])
    d = Directory(index)
    d._build_units(index.unit_columns())
    d._build_persons([], [])
    for scope in (0, 6_000):
        monkeypatch.setattr(search_module, "SCOPE_SLOTS", scope)  # type: ignore[attr-defined]
        for query in ("柯城 河长", "河长 柯城", "柯城"):
            total, slots, _ = search(index, d, query)
            # 11 (level 5, one below the exact 柯城 at level 4) before 10 (level 4, two below the one at level 2)
            assert [index.position_id(k) for k in slots] == [11, 10], (scope, query)
            assert total == 2


def test_a_unit_created_through_the_api_is_found_by_its_code(monkeypatch: object) -> None:
    """``<parent code>x<NNN>`` (docs/org-structure.md) is a code term like an NBS code, on both search paths."""
    import org_tree.search as search_module

    units = [  # id, parent, level, code, name
        (1, None, 1, "46", "海南省"), (2, 1, 2, "4601", "海口市"),
        (3, 2, 3, "460105", "秀英区"), (4, 3, 4, "460105001", "秀英街道"), (5, 4, 5, "460105001001", "秀中社区"),
        (6, 5, 6, "460105001001x004", "新网格"), (7, 5, 6, "460105001001004", "第4网格"),
    ]  # fmt: skip
    index = OrgIndex.build(1, ROLES, units, [(10, 6, 4), (11, 7, 4), (12, 5, 3)], [])
    d = Directory(index)
    d._build_units(index.unit_columns())
    d._build_persons([], [])
    for scope in (0, 6_000):
        monkeypatch.setattr(search_module, "SCOPE_SLOTS", scope)  # type: ignore[attr-defined]
        total, slots, _ = search(index, d, "460105001001x004")
        assert [index.position_id(k) for k in slots] == [10] and total == 1, scope
        total, slots, _ = search(index, d, "460105001001x004 专职网格员")
        assert [index.position_id(k) for k in slots] == [10], scope
        # Letters and digits that are no unit's code are a name term, as before: nothing here.
        assert search(index, d, "460105001001x009")[0] == 0, scope
