"""Selectors: one definition of "which positions", with a JSON form and a text form.

Why one AST for both: the REST API takes JSON, the CLI and console take the
compact text; both must mean exactly the same thing, so both parse to the
frozen dataclasses below and both print back from them (round-trip tested).
The grammar with examples is in ``docs/selectors.md``.

Text grammar::

    expr  := term (("|" | "-") term)*        left-associative; "|" union, "-" exclusion
    term  := "(" expr ")" | atom
    atom  := "pos:" INT                        one position
           | ROLE "@" UNIT                     a role in one unit
           | ROLE "@" UNIT "/**" [LEVELS]      a role in the unit's subtree (the unit included)
           | "*@" UNIT                         every position of one unit
           | "head(pos:" INT ")"               the head of that position's unit
           | "superior(pos:" INT ")"           the same role one level up
    UNIT  := CODE (a unit code: 1-32 ASCII letters and digits) | "#" INT (a unit id)
    LEVELS:= "[" LEVEL ("," LEVEL)* "]"       province city county township village grid
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from kernel.errors import BadRequest
from kernel.numbers import MAX_ID, parse_uint
from org_tree.divisions import Level

logger = logging.getLogger(__name__)

__all__ = [
    "Exclude",
    "HeadOf",
    "PositionSel",
    "RoleIn",
    "RoleUnder",
    "Selector",
    "SuperiorOf",
    "Union",
    "UnitAll",
    "UNIT_FORMS",
    "UnitRef",
    "atoms",
    "is_unit_code",
    "parse_json",
    "parse_selector",
    "parse_text",
    "to_json",
    "to_text",
    "unit_value",
]

MAX_TEXT = 4_000
MAX_ATOMS = 200
MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class UnitRef:
    """A unit named by its code (``"330802"``) or its id."""

    code: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class PositionSel:
    position_id: int


@dataclass(frozen=True, slots=True)
class RoleIn:
    role: str  # role key or display name
    unit: UnitRef


@dataclass(frozen=True, slots=True)
class RoleUnder:
    role: str
    unit: UnitRef
    levels: tuple[Level, ...] | None = None  # None: every level where the role exists


@dataclass(frozen=True, slots=True)
class UnitAll:
    unit: UnitRef


@dataclass(frozen=True, slots=True)
class HeadOf:
    position_id: int


@dataclass(frozen=True, slots=True)
class SuperiorOf:
    position_id: int


@dataclass(frozen=True, slots=True)
class Union:
    items: tuple[Selector, ...]


@dataclass(frozen=True, slots=True)
class Exclude:
    base: Selector
    minus: Selector


Selector = PositionSel | RoleIn | RoleUnder | UnitAll | HeadOf | SuperiorOf | Union | Exclude
Atom = PositionSel | RoleIn | RoleUnder | UnitAll | HeadOf | SuperiorOf


def atoms(sel: Selector, *, positive_only: bool = False) -> list[Atom]:
    """The atoms of a selector, left to right (``positive_only`` skips exclusions' right sides)."""
    if isinstance(sel, Union):
        return [a for item in sel.items for a in atoms(item, positive_only=positive_only)]
    if isinstance(sel, Exclude):
        right = [] if positive_only else atoms(sel.minus)
        return atoms(sel.base, positive_only=positive_only) + right
    return [sel]


def _bad(message: str, **data: Any) -> BadRequest:
    return BadRequest(f"selector: {message}", data={"field": "selector", **data})


def _check_size(sel: Selector) -> Selector:
    if len(atoms(sel)) > MAX_ATOMS:
        raise _bad(f"more than {MAX_ATOMS} parts")
    return sel


# ---------------------------------------------------------------------- text
_ROLE = r"[^\s@|()\[\],#*:/\-]+"
# NBS codes are digits; a unit created through the API gets "<parent code>x<NNN>" (org_tree/structure.py).
_CODE = r"[0-9A-Za-z]{1,32}"
_CODE_RE = re.compile(_CODE)


def is_role_word(value: str) -> bool:
    """Whether ``value`` can name a role in a selector (text and JSON alike): one word without spaces or
    any of ``@ | ( ) [ ] , # * : / -``. A role's name must be one, or selectors cannot name the role by it.
    """
    return re.fullmatch(_ROLE, value) is not None


def is_unit_code(value: str) -> bool:
    """Whether ``value`` has the form of a unit code: 1-32 ASCII letters and digits.

    The one rule for what a selector can name, a unit may be created with, and
    search reads as a code (``org_tree.structure``, ``org_tree.search_scope``).
    """
    return _CODE_RE.fullmatch(value) is not None


#: How a request may name a unit, as the refusals say it (docs/selectors.md "Units").
UNIT_FORMS = 'its code (1-32 ASCII letters and digits, "330802"), its id as "#17", or (in JSON) the integer 17'


def unit_value(value: object, field: str = "unit") -> int | str:
    """A unit named in a request: its id (``17`` in JSON, ``"#17"`` anywhere) or its code (``"330802"``).

    The one reading of a unit reference for every field that takes one (URL paths, query
    parameters, bodies, subscription filters, selectors), so ``#17`` means the same wherever it
    is written. A bare string of digits is a code: NBS codes are digits. Anything else answers
    400 naming ``field`` and the accepted forms (a well-formed code no unit has is a 404 later).
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
        return value
    if isinstance(value, str):
        uid = parse_uint(value[1:], 0, MAX_ID) if value.startswith("#") else None
        if uid is not None:
            return uid
        if is_unit_code(value):
            return value
    raise BadRequest(f"{field} must name a unit by {UNIT_FORMS}", data={"field": field, "accepted": _UNIT_ACCEPTED})


_UNIT_ACCEPTED = ["330802", "#17", 17]


_TOKEN = re.compile(
    rf"""\s*(?:
      (?P<lpar>\() | (?P<rpar>\)) | (?P<op>[|\-]) |
      (?P<pos>pos:(?P<pos_id>\d{{1,18}})) |
      (?P<rel>(?P<rel_kind>head|superior)\(\s*pos:(?P<rel_id>\d{{1,18}})\s*\)) |
      (?P<unit_all>\*@(?P<ua_unit>\#\d{{1,18}}|{_CODE})) |
      (?P<role>(?P<role_name>{_ROLE})@(?P<r_unit>\#\d{{1,18}}|{_CODE})(?P<sub>/\*\*(?:\[(?P<levels>[^\]]*)\])?)?)
    )""",
    re.VERBOSE,
)


def _unit_from_text(text: str) -> UnitRef:
    return UnitRef(id=int(text[1:])) if text.startswith("#") else UnitRef(code=text)


def _levels_from(values: list[str]) -> tuple[Level, ...]:
    if not values:
        raise _bad("an empty level list; leave out [...] for every level")
    try:
        return tuple(sorted({Level.parse(v) for v in values}))
    except BadRequest as exc:
        raise _bad(exc.message, levels=values) from exc


def parse_text(text: str) -> Selector:
    """Parse the compact text form; ``BadRequest`` says where and why it failed."""
    if not isinstance(text, str) or not text.strip():
        raise _bad("empty selector")
    if len(text) > MAX_TEXT:
        raise _bad(f"longer than {MAX_TEXT} characters")
    tokens: list[tuple[str, Any, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            snippet = text[pos : pos + 20].strip()
            raise _bad(f"cannot read {snippet!r} at character {pos + 1}", position=pos + 1)
        start = pos + (len(m.group(0)) - len(m.group(0).lstrip()))
        if m.group("lpar"):
            tokens.append(("(", None, start))
        elif m.group("rpar"):
            tokens.append((")", None, start))
        elif m.group("op"):
            tokens.append((m.group("op"), None, start))
        elif m.group("pos"):
            tokens.append(("atom", PositionSel(int(m.group("pos_id"))), start))
        elif m.group("rel"):
            cls = HeadOf if m.group("rel_kind") == "head" else SuperiorOf
            tokens.append(("atom", cls(int(m.group("rel_id"))), start))
        elif m.group("unit_all"):
            tokens.append(("atom", UnitAll(_unit_from_text(m.group("ua_unit"))), start))
        else:
            role, unit = m.group("role_name"), _unit_from_text(m.group("r_unit"))
            if m.group("sub"):
                raw = m.group("levels")
                levels = None if raw is None else _levels_from([v for v in raw.split(",") if v.strip()])
                tokens.append(("atom", RoleUnder(role, unit, levels), start))
            else:
                tokens.append(("atom", RoleIn(role, unit), start))
        pos = m.end()
    parser = _Parser(tokens)
    sel = parser.expr(0)
    if parser.i != len(tokens):
        raise _bad(f"unexpected {tokens[parser.i][0]!r} at character {tokens[parser.i][2] + 1}")
    return _check_size(sel)


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any, int]]) -> None:
        self.tokens = tokens
        self.i = 0

    def _peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def expr(self, depth: int) -> Selector:
        if depth > MAX_DEPTH:
            raise _bad(f"nested deeper than {MAX_DEPTH}")
        cur = self.term(depth)
        flat: list[Selector] | None = None  # items of a union built at this level
        while self._peek() in ("|", "-"):
            op = self.tokens[self.i][0]
            self.i += 1
            rhs = self.term(depth)
            if op == "|":
                flat = [*flat, rhs] if flat is not None else [cur, rhs]
                cur = Union(tuple(flat))
            else:
                cur = Exclude(cur, rhs)
                flat = None
        return cur

    def term(self, depth: int) -> Selector:
        kind = self._peek()
        if kind is None:
            raise _bad("unexpected end; a selector part is missing")
        tok = self.tokens[self.i]
        if kind == "(":
            self.i += 1
            inner = self.expr(depth + 1)
            if self._peek() != ")":
                raise _bad(f"missing ')' for '(' at character {tok[2] + 1}")
            self.i += 1
            return inner
        if kind == "atom":
            self.i += 1
            return tok[1]  # type: ignore[no-any-return]
        raise _bad(f"unexpected {kind!r} at character {tok[2] + 1}")


def _unit_text(unit: UnitRef) -> str:
    return f"#{unit.id}" if unit.id is not None else str(unit.code)


def to_text(sel: Selector) -> str:
    """The compact text form; ``parse_text(to_text(s)) == s``."""
    if isinstance(sel, Union):
        return " | ".join(_wrapped(i) for i in sel.items)
    if isinstance(sel, Exclude):
        return f"{_wrapped(sel.base)} - {_wrapped(sel.minus)}"
    if isinstance(sel, PositionSel):
        return f"pos:{sel.position_id}"
    if isinstance(sel, HeadOf):
        return f"head(pos:{sel.position_id})"
    if isinstance(sel, SuperiorOf):
        return f"superior(pos:{sel.position_id})"
    if isinstance(sel, UnitAll):
        return f"*@{_unit_text(sel.unit)}"
    if isinstance(sel, RoleIn):
        return f"{sel.role}@{_unit_text(sel.unit)}"
    levels = "" if sel.levels is None else "[" + ",".join(lv.label for lv in sel.levels) + "]"
    return f"{sel.role}@{_unit_text(sel.unit)}/**{levels}"


def _wrapped(sel: Selector) -> str:
    return f"({to_text(sel)})" if isinstance(sel, Union | Exclude) else to_text(sel)


# ---------------------------------------------------------------------- JSON
_KINDS = ("position", "role", "unit_all", "head_of", "superior_of", "union", "exclude")


def _unit_from_json(value: Any, field: str) -> UnitRef:
    try:
        ref = unit_value(value, field)
    except BadRequest:
        raise _bad(f"{field} must name a unit by {UNIT_FORMS}", value=repr(value)[:40]) from None
    return UnitRef(id=ref) if isinstance(ref, int) else UnitRef(code=ref)


def _int_from_json(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{field} must be a non-negative integer")
    return value


def parse_json(obj: Any, *, _depth: int = 0) -> Selector:
    """Parse the JSON form (already decoded); ``BadRequest`` names the offending key."""
    if _depth > MAX_DEPTH:
        raise _bad(f"nested deeper than {MAX_DEPTH}")
    if not isinstance(obj, dict):
        raise _bad("each selector part must be a JSON object")
    kinds = [k for k in _KINDS if k in obj]
    if len(kinds) != 1:
        raise _bad(f"each part needs exactly one of {', '.join(_KINDS)}", keys=sorted(map(str, obj))[:10])
    kind = kinds[0]
    allowed = {"role": {"role", "unit", "under", "levels"}}.get(kind, {kind})
    extra = set(obj) - allowed
    if extra:
        raise _bad(f"unknown keys {sorted(map(str, extra))} in a {kind!r} part")
    if kind == "position":
        return PositionSel(_int_from_json(obj["position"], "position"))
    if kind == "head_of":
        return HeadOf(_int_from_json(obj["head_of"], "head_of"))
    if kind == "superior_of":
        return SuperiorOf(_int_from_json(obj["superior_of"], "superior_of"))
    if kind == "unit_all":
        return UnitAll(_unit_from_json(obj["unit_all"], "unit_all"))
    if kind == "union":
        items = obj["union"]
        if not isinstance(items, list) or len(items) < 2:
            raise _bad("union needs a list of at least two selectors")
        return _check_size(Union(tuple(parse_json(i, _depth=_depth + 1) for i in items)))
    if kind == "exclude":
        body = obj["exclude"]
        if not isinstance(body, dict) or set(body) != {"from", "minus"}:
            raise _bad('exclude needs {"from": selector, "minus": selector}')
        return _check_size(
            Exclude(parse_json(body["from"], _depth=_depth + 1), parse_json(body["minus"], _depth=_depth + 1))
        )
    role = obj["role"]
    if not isinstance(role, str) or not re.fullmatch(_ROLE, role):
        raise _bad("role must be a role key or name without spaces or operator characters")
    if ("unit" in obj) == ("under" in obj):
        raise _bad('a role part needs exactly one of "unit" (in that unit) or "under" (in its subtree)')
    if "unit" in obj:
        if "levels" in obj:
            raise _bad('"levels" only goes with "under"')
        return RoleIn(role, _unit_from_json(obj["unit"], "unit"))
    levels = obj.get("levels")
    # Names or numbers 1-6, as docs/selectors.md says of both forms ("village" or 5).
    if levels is not None and (
        not isinstance(levels, list) or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in levels)
    ):
        raise _bad("levels must be a list of level names or numbers 1-6")
    return RoleUnder(
        role, _unit_from_json(obj["under"], "under"), None if levels is None else _levels_from([str(v) for v in levels])
    )


def _unit_json(unit: UnitRef) -> int | str:
    return unit.id if unit.id is not None else str(unit.code)


def to_json(sel: Selector) -> dict[str, Any]:
    """The JSON form; ``parse_json(to_json(s)) == s``."""
    if isinstance(sel, Union):
        return {"union": [to_json(i) for i in sel.items]}
    if isinstance(sel, Exclude):
        return {"exclude": {"from": to_json(sel.base), "minus": to_json(sel.minus)}}
    if isinstance(sel, PositionSel):
        return {"position": sel.position_id}
    if isinstance(sel, HeadOf):
        return {"head_of": sel.position_id}
    if isinstance(sel, SuperiorOf):
        return {"superior_of": sel.position_id}
    if isinstance(sel, UnitAll):
        return {"unit_all": _unit_json(sel.unit)}
    if isinstance(sel, RoleIn):
        return {"role": sel.role, "unit": _unit_json(sel.unit)}
    out: dict[str, Any] = {"role": sel.role, "under": _unit_json(sel.unit)}
    if sel.levels is not None:
        out["levels"] = [lv.label for lv in sel.levels]
    return out


def parse_selector(value: Any) -> Selector:
    """Either form: a string is the text form, a dict the JSON form."""
    if isinstance(value, str):
        return parse_text(value)
    return parse_json(value)
