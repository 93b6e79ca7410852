"""Keeps this process's org index in step with the org change log.

Why a log applied in order: every org write bumps ``org_version`` and appends
its entries to ``org_changes`` in its own transaction (``org_tree.versioning``),
so the versions commit in order with no gaps. Each process reads the entries
after the version it has and applies them to its index *in place*: holder
changes re-read the few positions' current holders; structural changes
(``scope = 'struct'``, the edit in ``detail`` as JSON, see
``org_tree.structure``) are replayed by ``org_tree.index_patch``. Listeners (the
找岗位 directory) are told what was applied, so they patch themselves too.

A rebuild remains the fallback: a ``tree`` entry (a division import), a
version with no entry (a gap: a corrupted or pruned log), more entries than
``PATCH_LIMIT`` at once, or an entry that does not apply.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from kernel.db.database import Database
from kernel.errors import ZzdError
from org_tree.index import OrgIndex
from org_tree.index_load import role_info
from org_tree.org_schema import assignments, org_changes
from org_tree.versioning import read_version

logger = logging.getLogger(__name__)

__all__ = ["PATCH_LIMIT", "Applied", "OrgIndexHolder", "apply_op", "read_holders"]

PATCH_LIMIT = 5_000  # more entries than this in one refresh → rebuild
_REBUILD_TRIES = 3  # builds of one rebuild when the changes meanwhile do not apply (imports in a row)


@dataclass
class Applied:
    """What one refresh did, for listeners: structural ops and person entries in order, holder changes."""

    version: int
    rebuilt: bool
    ops: list[dict[str, Any]] = field(default_factory=list)
    holder_positions: set[int] = field(default_factory=set)


Listener = Callable[[OrgIndex, Applied], Awaitable[None]]
CommitHook = Callable[[int], Awaitable[None]]


def apply_op(index: OrgIndex, op: dict[str, Any]) -> None:
    """Replay one structural entry (``org_tree.structure`` writes them) on ``index``.

    Raises:
        KeyError, ValueError, IndexError: the entry does not fit the index (the caller rebuilds).
    """
    kind = op["op"]
    if kind == "unit_create":
        parent = index.unit(int(op["parent"])) if op.get("parent") is not None else -1
        index.add_unit(int(op["unit"]), parent, int(op["level"]), str(op["code"]), str(op["name"]))
    elif kind == "unit_rename":
        index.rename_unit(index.unit(int(op["unit"])), str(op["name"]))
    elif kind == "unit_move":
        index.move_unit(index.unit(int(op["unit"])), index.unit(int(op["parent"])))
    elif kind == "unit_retire":
        index.retire_unit(index.unit(int(op["unit"])))
    elif kind == "unit_merge":
        index.merge_units(index.unit(int(op["unit"])), index.unit(int(op["into"])))
    elif kind == "position_create":
        title = op.get("title")
        index.add_position(int(op["position"]), index.unit(int(op["unit"])), int(op["role"]), title and str(title))
    elif kind == "position_retire":
        index.retire_position(int(op["position"]))
    elif kind == "role_set":
        index.set_role(role_info(op["role"]))
    elif kind != "person":
        raise ValueError(f"unknown org change {kind!r}")


class OrgIndexHolder:
    """Owns the current index of this process and keeps it in step with ``org_version``.

    Call :meth:`refresh_if_changed` periodically (~0.5 s) and after a broker hint;
    while nothing changed it costs one indexed single-row query. Refreshes are
    serialised (a lock): the periodic one, a write's own and a hint's may overlap,
    and each entry must be applied exactly once.
    """

    def __init__(self, db: Database, index: OrgIndex | None = None) -> None:
        self._db = db
        self._index = index
        self._listeners: list[Listener] = []
        self._commit_hooks: list[CommitHook] = []
        self._lock = asyncio.Lock()
        self.rebuilds = 0
        self.patches = 0

    @property
    def index(self) -> OrgIndex:
        if self._index is None:
            raise RuntimeError("OrgIndexHolder.load() was not awaited")
        return self._index

    def listen(self, listener: Listener) -> None:
        """Call ``listener(index, applied)`` after every change this holder applies (or rebuild)."""
        self._listeners.append(listener)

    def on_commit(self, hook: CommitHook) -> None:
        """Call ``hook(version)`` after an org write of this process committed (the server wakes the others)."""
        self._commit_hooks.append(hook)

    async def committed(self) -> None:
        """After an org write of this process: apply it here, then run the commit hooks (failures only logged)."""
        await self.refresh_if_changed()
        for hook in self._commit_hooks:
            try:
                await hook(self.index.version)
            except Exception:  # a hint: the others' poll still finds the change
                logger.warning("org commit hook failed", exc_info=True)

    async def load(self) -> OrgIndex:
        """(Re)build the index from the database, serialised with refreshes (see ``_rebuild``)."""
        async with self._lock:
            return await self._rebuild()

    async def _rebuild(self) -> OrgIndex:
        """Build a new index off the event loop, bring it up to the log, and swap it in.

        Why: a rebuild while serving (a division import, a gap in the log, more than
        ``PATCH_LIMIT`` entries) took 4 s on a province in the loop, stalling every socket of
        the process. Now the rows are read a chunk at a time and the index is built from them
        in a thread (``OrgIndex.load``); the live index serves meanwhile, unchanged. Refreshes
        wait on the lock, so what is committed during the build stays in the log after the new
        index's version: it is applied to the new index here, in the loop, before the swap (as
        ``DirectoryService`` patches its build with what arrived meanwhile); when it cannot be
        (another import meanwhile) the index is built again. The swap is one assignment, with
        no ``await`` between the catch-up and it. The old index is released once nobody holds it.
        """
        index = await OrgIndex.load(self._db)
        for _ in range(_REBUILD_TRIES - 1):
            if await self._catch_up(index) is not None:
                break
            logger.info("org index: changes during the rebuild do not apply; building again")
            index = await OrgIndex.load(self._db)
        # After the last try the index is installed as built (a consistent snapshot): the next
        # refresh applies what follows or rebuilds.
        self._index = index
        self.rebuilds += 1
        await self._tell(Applied(index.version, True))
        return index

    async def _tell(self, applied: Applied) -> None:
        for listener in self._listeners:
            await listener(self.index, applied)

    async def refresh_if_changed(self) -> bool:
        """Bring the index up to the committed version; True when it changed."""
        async with self._lock:
            return await self._refresh()

    async def _refresh(self) -> bool:
        if self._index is None:
            await self._rebuild()
            return True
        current = self._index.version
        applied = await self._catch_up(self._index)
        if applied is None:
            await self._rebuild()
            return True
        if applied.version == current:
            return False
        self.patches += 1
        await self._tell(applied)
        return True

    async def _catch_up(self, index: OrgIndex) -> Applied | None:
        """Apply the log after ``index.version`` to ``index`` in place; None when a rebuild is due instead."""
        current = index.version
        async with self._db.read() as conn:
            version = await read_version(conn)
            if version == current:
                return Applied(version, False)
            rows = (
                await conn.execute(
                    select(org_changes.c.version, org_changes.c.scope, org_changes.c.position_id, org_changes.c.detail)
                    # bounded above: under READ COMMITTED a later statement may see newer commits
                    .where(org_changes.c.version > current, org_changes.c.version <= version)
                    .order_by(org_changes.c.version, org_changes.c.id)
                    .limit(PATCH_LIMIT + 1)
                )
            ).all()
            seen = {int(r[0]) for r in rows}
            patchable = (
                version > current
                and len(rows) <= PATCH_LIMIT
                and seen == set(range(current + 1, version + 1))  # a missing version: the log has a gap
                and all(r[1] in ("holders", "struct", "person") for r in rows)
            )
            if not patchable:
                logger.info("org index: rebuilding (%d entries from %d to %d)", len(rows), current, version)
                return None
            applied = Applied(version, False)
            for _v, scope, pid, detail in rows:
                if scope == "holders" and pid is not None:
                    applied.holder_positions.add(int(pid))
                elif scope in ("struct", "person") and detail is not None:  # None: a version's first row
                    applied.ops.append(json.loads(str(detail)))
            holders = await read_holders(conn, applied.holder_positions)
        try:
            for op in applied.ops:
                apply_op(index, op)
        except (KeyError, ValueError, IndexError, TypeError, ZzdError) as exc:
            # ZzdError: the index's own look-ups raise NotFound for a unit it does not have. Before
            # 2026-12-05 that escaped, and every later refresh failed on the same entry (广西 audit).
            logger.warning("org index: an entry did not apply (%r); rebuilding", exc)
            return None
        index.patch_holders(holders, version)
        return applied


async def read_holders(conn: Any, pos_ids: set[int]) -> dict[int, tuple[list[int], list[tuple[int, str]]]]:
    """``{position id: (primary holders, [(person id, deputy|acting)])}`` as committed, or as ``conn``'s
    open transaction has them (the index's order: by assignment)."""
    holders: dict[int, tuple[list[int], list[tuple[int, str]]]] = {p: ([], []) for p in pos_ids}
    ids = sorted(pos_ids)
    for i in range(0, len(ids), 1000):
        rows = await conn.execute(
            select(assignments.c.position_id, assignments.c.person_id, assignments.c.kind)
            .where(assignments.c.position_id.in_(ids[i : i + 1000]), assignments.c.end_at.is_(None))
            .order_by(assignments.c.id)
        )
        for pos_id, person_id, kind in rows:
            if kind == "primary":
                holders[int(pos_id)][0].append(int(person_id))
            else:
                holders[int(pos_id)][1].append((int(person_id), str(kind)))
    return holders
