"""Selectors: text and JSON forms parse to the same AST, round-trip, and fail with clear messages."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.errors import BadRequest
from org_tree.divisions import Level
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
    parse_json,
    parse_selector,
    parse_text,
    to_json,
    to_text,
)
from tests.profiles import examples

units = st.one_of(
    st.from_regex(r"\A[0-9]{2,15}\Z").map(lambda c: UnitRef(code=c)),
    st.from_regex(r"\A[0-9A-Za-z]{1,32}\Z").map(lambda c: UnitRef(code=c)),  # API-made units: 330802001001x004
    st.integers(0, 10**12).map(lambda i: UnitRef(id=i)),
)
roles = st.sampled_from(["专职网格员", "村书记", "河长", "grid_worker", "village_secretary", "综治办主任"])
levels = st.none() | st.sets(st.sampled_from(list(Level)), min_size=1).map(lambda s: tuple(sorted(s)))
ids = st.integers(0, 10**12)
atoms = st.one_of(
    st.builds(PositionSel, ids),
    st.builds(RoleIn, roles, units),
    st.builds(RoleUnder, roles, units, levels),
    st.builds(UnitAll, units),
    st.builds(HeadOf, ids),
    st.builds(SuperiorOf, ids),
)
selectors: st.SearchStrategy[Selector] = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=4).map(lambda xs: Union(tuple(xs))),
        st.builds(Exclude, inner, inner),
    ),
    max_leaves=12,
)


@settings(max_examples=examples(400))
@given(selectors)
def test_text_and_json_round_trip(sel: Selector) -> None:
    assert parse_text(to_text(sel)) == sel
    assert parse_json(json.loads(json.dumps(to_json(sel)))) == sel
    assert parse_selector(to_text(sel)) == parse_selector(to_json(sel))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pos:42", PositionSel(42)),
        ("村书记@330802001001", RoleIn("村书记", UnitRef(code="330802001001"))),
        ("专职网格员@330802/**", RoleUnder("专职网格员", UnitRef(code="330802"))),
        ("河长@#7/**[county, township]", RoleUnder("河长", UnitRef(id=7), (Level.COUNTY, Level.TOWNSHIP))),
        ("*@330802", UnitAll(UnitRef(code="330802"))),
        ("*@330802001001x004", UnitAll(UnitRef(code="330802001001x004"))),  # the code POST /org/units gives
        ("head(pos:9)", HeadOf(9)),
        ("superior( pos:9 )", SuperiorOf(9)),
        (
            "村书记@330802/** | 专职网格员@330802/** - 专职网格员@330802001/**",
            Exclude(
                Union((RoleUnder("村书记", UnitRef(code="330802")), RoleUnder("专职网格员", UnitRef(code="330802")))),
                RoleUnder("专职网格员", UnitRef(code="330802001")),
            ),
        ),
        (
            "pos:1 | (pos:2 - pos:3)",
            Union((PositionSel(1), Exclude(PositionSel(2), PositionSel(3)))),
        ),
    ],
)
def test_text_examples(text: str, expected: Selector) -> None:
    assert parse_text(text) == expected


def test_json_example_matches_text() -> None:
    body = {
        "union": [
            {"role": "村书记", "under": "330802", "levels": ["village"]},
            {"exclude": {"from": {"role": "专职网格员", "under": "330802"}, "minus": {"unit_all": 17}}},
        ]
    }
    assert parse_json(body) == parse_text("村书记@330802/**[village] | (专职网格员@330802/** - *@#17)")


def test_json_takes_a_unit_id_as_hash_id_as_the_text_form_does() -> None:
    """``"#17"`` is the id 17 in JSON too, as in every other unit field (docs/selectors.md)."""
    assert parse_json({"unit_all": "#17"}) == parse_json({"unit_all": 17}) == parse_text("*@#17")
    assert parse_json({"role": "河长", "under": "#3"}) == parse_text("河长@#3/**")


def test_json_levels_may_be_numbers_as_in_the_text_form() -> None:
    """docs/selectors.md: levels are names "or 1-6", in either form; a JSON client writes 5, not "5"."""
    numbers = parse_json({"role": "河长", "under": "330802", "levels": [4, 5]})
    assert numbers == parse_json({"role": "河长", "under": "330802", "levels": ["township", "village"]})
    assert numbers == parse_text("河长@330802/**[4,5]")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty selector"),
        ("pos:", "cannot read"),
        ("村书记@", "cannot read"),
        ("pos:1 |", "a selector part is missing"),
        ("(pos:1", "missing ')'"),
        ("pos:1 pos:2", "unexpected"),
        ("河长@33/**[planet]", "unknown level"),
        ("河长@33/**[]", "empty level list"),
        ("a b@33", "cannot read"),
        ("(" * 40 + "pos:1" + ")" * 40, "nested deeper"),
        (" | ".join(f"pos:{i}" for i in range(201)), "more than 200 parts"),
    ],
)
def test_text_errors_are_bad_request(text: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_text(text)
    assert fragment in info.value.message
    assert info.value.data["field"] == "selector"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "JSON object"),
        ({}, "exactly one of"),
        ({"position": 1, "unit_all": "33"}, "exactly one of"),
        ({"position": "1"}, "non-negative integer"),
        ({"position": True}, "non-negative integer"),
        ({"role": "河长"}, 'exactly one of "unit"'),
        ({"role": "河长", "unit": "33", "levels": ["city"]}, '"levels" only goes with "under"'),
        ({"role": "河 长", "under": "33"}, "role must be"),
        ({"role": "河长", "under": "33", "levels": [True]}, "level names or numbers"),
        ({"role": "河长", "under": "33", "levels": [7]}, "unknown level"),
        ({"unit_all": "ab-c"}, 'unit_all must name a unit by its code (1-32 ASCII letters and digits, "330802")'),
        ({"unit_all": "a" * 33}, "must name a unit by its code"),
        ({"unit_all": "#x"}, "must name a unit by its code"),
        ({"union": [{"position": 1}]}, "at least two"),
        ({"exclude": {"from": {"position": 1}}}, "exclude needs"),
        ({"position": 1, "colour": 2}, "unknown keys"),
    ],
)
def test_json_errors_are_bad_request(body: object, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_json(body)
    assert fragment in info.value.message
