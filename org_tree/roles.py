"""The role catalog: kinds of positions, shipped as data (``roles.toml``).

Why data and not code: provinces differ in which roles they staff, and roles
can be added through the API; the catalog only seeds the ``roles`` table and
tells a division import which positions to create in every unit.
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.errors import BadRequest
from org_tree.divisions import Level
from org_tree.selectors import is_role_word

logger = logging.getLogger(__name__)

__all__ = ["JURISDICTION_RULES", "ROLE_NAME_RULE", "RoleSpec", "load_catalog", "validate_role"]

JURISDICTION_RULES = ("subtree", "chain", "unit", "none")
CATALOG_PATH = Path(__file__).with_name("roles.toml")
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: Why a role's name is one word: selectors name roles by key or name, and refuse a name with a space or
#: an operator character, so a role named "安全 员" or "a@b" could never be addressed by its name
#: (accepted until 2026-12-05, 广西 audit).
ROLE_NAME_RULE = "name must be one word without spaces or any of @ | ( ) [ ] , # * : / - (selectors name roles by it)"


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """A role as declared in the catalog (or submitted through the API)."""

    key: str
    name: str
    levels: tuple[Level, ...]
    jurisdiction: str = "subtree"
    is_head: bool = False
    pool: bool = False
    auto: bool = True

    @property
    def levels_text(self) -> str:
        return ",".join(level.label for level in self.levels)


def validate_role(raw: dict[str, Any]) -> RoleSpec:
    """Check one role declaration; a bad one raises ``BadRequest`` naming the field."""
    key = raw.get("key")
    if not isinstance(key, str) or not _KEY.match(key):
        raise BadRequest("role key must be lower-case ascii letters, digits or _", data={"field": "key", "key": key})
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise BadRequest(f"role {key}: name must be 1..100 characters", data={"field": "name"})
    if not is_role_word(name.strip()):
        raise BadRequest(ROLE_NAME_RULE, data={"field": "name"})
    levels_raw = raw.get("levels")
    if isinstance(levels_raw, str):
        levels_raw = [p for p in levels_raw.split(",") if p.strip()]
    if not isinstance(levels_raw, list) or not levels_raw:
        raise BadRequest(f"role {key}: levels must be a non-empty list", data={"field": "levels"})
    levels = tuple(sorted({_level(v) for v in levels_raw}))
    jurisdiction = raw.get("jurisdiction", "subtree")
    if jurisdiction not in JURISDICTION_RULES:
        raise BadRequest(
            f"role {key}: jurisdiction must be one of {', '.join(JURISDICTION_RULES)}", data={"field": "jurisdiction"}
        )
    flags = {}
    for flag, default in (("is_head", False), ("pool", False), ("auto", True)):
        value = raw.get(flag, default)
        if not isinstance(value, bool):
            raise BadRequest(f"role {key}: {flag} must be true or false", data={"field": flag})
        flags[flag] = value
    return RoleSpec(key, name.strip(), levels, jurisdiction, **flags)


def _level(raw: object) -> Level:
    try:
        return Level.parse(str(raw))
    except BadRequest as exc:  # name the field, as every other bad input of a role does
        raise BadRequest(exc.message, data={"field": "levels", "level": str(raw)}) from None


def load_catalog(path: str | Path | None = None) -> list[RoleSpec]:
    """Read a role catalog (the shipped ``roles.toml`` by default).

    Raises:
        BadRequest: a role is invalid, or two roles share a key or name.
    """
    with open(path or CATALOG_PATH, "rb") as fh:
        data = tomllib.load(fh)
    specs = [validate_role(r) for r in data.get("role", [])]
    seen: set[str] = set()
    for spec in specs:
        for ident in (spec.key, spec.name):
            if ident in seen:
                raise BadRequest(f"role catalog: {ident!r} declared twice")
            seen.add(ident)
    return specs
