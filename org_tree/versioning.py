"""The org change counter every process polls (see ``org_schema.org_version``).

Why in the writing transaction: the version row is updated last-but-one in
each org write, under its row lock, so versions commit in order and a reader
that sees version N also sees every change up to N.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.clock import Clock
from kernel.db.dialect import insert_ignore
from org_tree.org_schema import org_changes, org_version

logger = logging.getLogger(__name__)

__all__ = ["append_change", "bump_version", "read_version"]


async def read_version(conn: AsyncConnection) -> int:
    """The committed org version (0 before the first change)."""
    value = (await conn.execute(select(org_version.c.version).where(org_version.c.id == 1))).scalar()
    return int(value or 0)


async def bump_version(
    conn: AsyncConnection,
    clock: Clock,
    *,
    scope: str,
    position_ids: Iterable[int] = (),
    detail: str | None = None,
) -> int:
    """Record one org change in the open transaction and return its version.

    Args:
        scope: ``"holders"`` when only who holds ``position_ids`` changed (readers re-read them),
            ``"struct"`` for a structural edit whose entries follow (``append_change``; readers
            replay them), ``"person"`` for a person's name (the directory), ``"tree"`` when
            anything else changed (a division import: readers rebuild).
    """
    stmt = update(org_version).where(org_version.c.id == 1).values(version=org_version.c.version + 1)
    res = await conn.execute(stmt.returning(org_version.c.version))
    version = res.scalar()
    if version is None:
        await conn.execute(insert_ignore(conn, org_version, ["id"]).values(id=1, version=0))
        version = (await conn.execute(stmt.returning(org_version.c.version))).scalar_one()
    now = clock.now()
    ids = list(position_ids)
    rows = [
        {"version": version, "scope": scope, "position_id": pid, "detail": detail, "changed_at": now} for pid in ids
    ]
    if not rows:
        rows = [{"version": version, "scope": scope, "position_id": None, "detail": detail, "changed_at": now}]
    await conn.execute(insert(org_changes), rows)
    return int(version)


async def append_change(conn: AsyncConnection, clock: Clock, version: int, scope: str, op: dict[str, object]) -> None:
    """Add one more entry (``op`` as JSON in ``detail``) to ``version``, after ``bump_version`` in the same transaction.

    Why separate: the version row lock must come first in an org write, but a
    structural entry names rows (a new unit's id) that exist only later in it.
    """
    row = {"version": version, "scope": scope, "position_id": None, "detail": json.dumps(op, ensure_ascii=False),
           "changed_at": clock.now()}  # fmt: skip
    await conn.execute(insert(org_changes), [row])
