"""Task categories: deadlines, escalation rule, DING flag and report routing, shipped as data.

Why in the database and not only in ``categories.toml``: an operator edits a
rule once and every server process must route by it on the next report, so
the table is the source of truth and the TOML file only seeds it (rows
already present are never overwritten by a restart).
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import insert_ignore, upsert
from kernel.errors import BadRequest, ErrorCode
from kernel.text import check_text
from messaging.tasks.schema import task_categories
from org_tree.divisions import Level

logger = logging.getLogger(__name__)

__all__ = ["CATALOG_PATH", "ESCALATION_RULES", "Category", "get_category", "list_categories", "load_catalog",
           "put_category", "seed_categories", "unknown_category", "validate_category"]  # fmt: skip

CATALOG_PATH = Path(__file__).with_name("categories.toml")
ESCALATION_RULES = ("same_role_up", "head_above")
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_MAX_SECONDS = 365 * 86400


@dataclass(frozen=True, slots=True)
class Category:
    key: str
    name: str
    accept_within: int
    resolve_within: int
    escalation: str
    ding: bool
    route_role: str | None = None
    route_level: str | None = None
    max_escalations: int = 5

    @property
    def accept_delta(self) -> timedelta:
        return timedelta(seconds=self.accept_within)

    @property
    def resolve_delta(self) -> timedelta:
        return timedelta(seconds=self.resolve_within)

    def accept_by(self, now: datetime, due_at: datetime | None) -> datetime:
        """The accept deadline of a task (re)entering ``created`` at ``now``.

        The category's window, but never later than the task's ``due_at``: a task due in an hour
        must not wait a day for its owner to accept it. Once ``due_at`` has passed (a task
        escalated at it, or reassigned after it), the new owner gets the category's window from
        ``now``: a deadline already in the past would escalate it again at once, up to the top.
        """
        window = now + self.accept_delta
        return window if due_at is None or due_at <= now else min(window, due_at)

    def resolve_by(self, now: datetime, due_at: datetime | None) -> datetime:
        """The resolve deadline of a task accepted (or returned to its owner) at ``now``.

        ``due_at`` when the creator gave one and it is still ahead; otherwise the category's
        window from ``now`` — an owner who accepts after the 截止时间 is not escalated on the spot.
        """
        return due_at if due_at is not None and due_at > now else now + self.resolve_delta

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bad(message: str, field: str) -> BadRequest:
    return BadRequest(message, data={"field": field})


def _seconds(raw: dict[str, Any], field: str) -> int:
    v = raw.get(field)
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= _MAX_SECONDS:
        raise _bad(f"{field} must be whole seconds between 1 and {_MAX_SECONDS}", field)
    return v


def validate_category(raw: dict[str, Any]) -> Category:
    """A category from untrusted input (TOML or an operator's request), every field checked.

    Raises:
        BadRequest: naming the offending field.
    """
    known = set(Category.__dataclass_fields__)
    extra = set(raw) - known
    if extra:
        raise _bad(f"unknown field(s): {', '.join(sorted(extra))}", sorted(extra)[0])
    key = raw.get("key")
    if not isinstance(key, str) or not _KEY.match(key):
        raise _bad("key must be lower-case letters, digits and _ (at most 32)", "key")
    name = raw.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
        raise _bad("name must be 1-100 characters", "name")
    # NUL and lone surrogates, as every other stored name: a NUL answered 500 on PostgreSQL (江西 audit).
    check_text(name, field="name", max_chars=100)
    escalation = raw.get("escalation")
    if escalation not in ESCALATION_RULES:
        raise _bad(f"escalation must be one of {', '.join(ESCALATION_RULES)}", "escalation")
    ding = raw.get("ding", False)
    if not isinstance(ding, bool):
        raise _bad("ding must be true or false", "ding")
    role, level = raw.get("route_role"), raw.get("route_level")
    if (role is None) != (level is None):
        raise _bad("route_role and route_level go together", "route_role" if role is None else "route_level")
    if role is not None and (not isinstance(role, str) or not 1 <= len(role) <= 64):
        raise _bad("route_role must be a role key", "route_role")
    if level is not None:
        if not isinstance(level, str):
            raise _bad("route_level must be a level name", "route_level")
        level = Level.parse(level).label
    max_esc = raw.get("max_escalations", 5)
    if not isinstance(max_esc, int) or isinstance(max_esc, bool) or not 0 <= max_esc <= 10:
        raise _bad("max_escalations must be 0-10", "max_escalations")
    return Category(
        key, name.strip(), _seconds(raw, "accept_within"), _seconds(raw, "resolve_within"), str(escalation), ding,
        role, level, max_esc,
    )  # fmt: skip


def load_catalog(path: str | Path | None = None) -> list[Category]:
    """The categories of a TOML catalog (default: the shipped one)."""
    with open(path or CATALOG_PATH, "rb") as f:
        raw = tomllib.load(f)
    return [validate_category(c) for c in raw.get("category", [])]


def _row(cat: Category, now: datetime) -> dict[str, Any]:
    rules = {k: v for k, v in cat.to_dict().items() if k not in ("key", "name")}
    return {"key": cat.key, "name": cat.name, "rules": json.dumps(rules, ensure_ascii=False), "updated_at": now}


def _from_row(key: str, name: str, rules: str) -> Category:
    return Category(key=key, name=name, **json.loads(rules))


#: The columns :func:`_from_row` takes, in its order.
_CATEGORIES = select(task_categories.c.key, task_categories.c.name, task_categories.c.rules)


async def seed_categories(conn: AsyncConnection, cats: list[Category], now: datetime) -> None:
    """Insert the catalog's categories that the table does not have yet (edits are kept)."""
    if cats:
        await conn.execute(insert_ignore(conn, task_categories, ["key"]), [_row(c, now) for c in cats])


async def put_category(conn: AsyncConnection, cat: Category, now: datetime) -> None:
    """Create or replace one category (the operator API)."""
    await conn.execute(upsert(conn, task_categories, _row(cat, now), ["key"], ["name", "rules", "updated_at"]))


def check_category_key(key: str) -> str:
    """``key`` when a category could have it; else the ``unknown_category`` refusal, before any query.

    Why before: every stored key matches ``_KEY`` (``validate_category``), and PostgreSQL refuses a NUL in a
    text parameter outright, so a client's ``"\u0000"`` reached the database and answered 500 there where
    SQLite answered ``unknown_category`` (found by the trust audit).
    """
    if not _KEY.match(key):
        raise unknown_category(key)
    return key


async def get_category(conn: AsyncConnection, key: str) -> Category:
    """One category; ``BadRequest`` with code ``unknown_category`` when there is none."""
    check_category_key(key)
    row = (await conn.execute(_CATEGORIES.where(task_categories.c.key == key))).first()
    if row is None:
        raise unknown_category(key)
    return _from_row(*row)


def unknown_category(key: str) -> BadRequest:
    """The error for a category key the table does not have (code ``unknown_category``)."""
    return BadRequest(f"unknown category {key[:40]!r}", code=ErrorCode.UNKNOWN_CATEGORY, data={"category": key[:40]})


async def list_categories(conn: AsyncConnection) -> list[Category]:
    rows = await conn.execute(_CATEGORIES.order_by(task_categories.c.key))
    return [_from_row(*r) for r in rows]
