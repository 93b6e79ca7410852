"""``zzd org import``: load the division files into units, roles and positions.

Why this shape: the whole import is one transaction (a malformed row is found
while reading, before the transaction opens; a failure inside rolls back
everything), upserts by code so re-running it is idempotent, and writes new
rows through ``org_tree.bulk`` (COPY / executemany) because a national import
is 2.5 million units and 8 million positions. Units that disappeared from the
files are dissolved (``dissolved_at``), not deleted, so history stays readable.

The files win over live edits of imported units (a rename or a move is undone),
except a retirement by a person: a unit an administrator retired or merged away
through the API (``units.retired_by``) stays retired, with the units of the files
under it, so neither it nor the admin grants over it come back unasked
(``kept_retired``; ``revive_retired=True`` brings them back, ``zzd org import
--revive-retired``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from pypinyin import Style, lazy_pinyin
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.audit import AuditEntry, record
from kernel.clock import Clock, SystemClock
from kernel.db.database import Database
from org_tree.bulk import bulk_insert, lift_statement_timeout, next_id, sync_sequence
from org_tree.divisions import DivisionSet, Level, UnitRecord, read_divisions
from org_tree.org_schema import positions, roles, units
from org_tree.roles import RoleSpec, load_catalog
from org_tree.versioning import bump_version

logger = logging.getLogger(__name__)

__all__ = ["ImportReport", "Progress", "dropped_units", "import_divisions", "pinyin_of", "sync_roles"]

#: ``progress(stage, done, total)``; the CLI wraps it in a progress bar.
Progress = Callable[[str, int, int], None]

_UNIT_COLUMNS = ("id", "code", "name", "level", "parent_id", "pinyin", "pinyin_initials", "imported", "created_at")
_POSITION_COLUMNS = ("id", "unit_id", "role_id", "title", "pool", "created_at")


@dataclass(slots=True)
class ImportReport:
    """What an import changed; counts are units unless named otherwise."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    #: units of the files kept retired: retired (or merged away) through the API by a person, or under one
    kept_retired: int = 0
    positions_created: int = 0
    roles_created: int = 0
    by_level: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    version: int = 0

    def as_dict(self) -> dict[str, object]:
        """Every field, ``by_level`` and ``warnings`` copied (the report may still grow)."""
        return asdict(self)


@lru_cache(maxsize=200_000)
def pinyin_of(name: str) -> tuple[str, str]:
    """Toneless pinyin and its initials, lower case: 柯城区 → ("kechengqu", "kcq")."""
    syllables = [s.lower() for s in lazy_pinyin(name, style=Style.NORMAL, errors="default")]
    full = "".join(syllables).replace(" ", "")
    initials = "".join(s[0] for s in syllables if s)
    return full[:400], initials[:100]


async def sync_roles(conn: AsyncConnection, clock: Clock, catalog: list[RoleSpec]) -> tuple[dict[str, int], int]:
    """Insert catalog roles missing from the table and refresh changed ones.

    Returns:
        role key → id for every role in the table, and how many were created.
    """
    existing = {r.key: r for r in (await conn.execute(select(roles))).all()}
    created = 0
    for spec in catalog:
        values = {
            "name": spec.name,
            "levels": spec.levels_text,
            "jurisdiction": spec.jurisdiction,
            "is_head": spec.is_head,
            "pool": spec.pool,
            "auto": spec.auto,
        }
        row = existing.get(spec.key)
        if row is None:
            await conn.execute(roles.insert().values(key=spec.key, created_at=clock.now(), **values))
            created += 1
        elif any(getattr(row, k) != v for k, v in values.items()):
            await conn.execute(update(roles).where(roles.c.id == row.id).values(**values))
    ids = {r.key: int(r.id) for r in (await conn.execute(select(roles.c.key, roles.c.id))).all()}
    return ids, created


async def import_divisions(
    db: Database,
    path: str | Path,
    *,
    grids_per_village: int = 3,
    progress: Progress | None = None,
    clock: Clock | None = None,
    catalog: list[RoleSpec] | None = None,
    provinces: Collection[str] | None = None,
    divisions: DivisionSet | None = None,
    revive_retired: bool = False,
) -> ImportReport:
    """Upsert the units of a division folder (and their auto positions) in one transaction.

    Args:
        db: the database.
        path: folder with the five division CSVs (plain or gzip).
        grids_per_village: grids generated under each village.
        progress: called as ``progress(stage, done, total)`` while working.
        clock: time source for ``created_at`` stamps.
        catalog: role catalog (the shipped ``roles.toml`` by default).
        provinces: import only these provinces' rows (2-digit codes); units of other provinces are
            left as they are (not dissolved). None: the whole folder, and imported units not in it dissolve.
        divisions: the folder as ``read_divisions`` read it already (the CLI reads it first to
            retire the units it drops, ``dropped_units``); None: read ``path`` here.
        revive_retired: also revive the units a person retired or merged away through the API (by
            default they stay retired, with the units of the files under them: ``kept_retired``).

    Returns:
        created / updated / unchanged / removed counts and the quirks met.

    Raises:
        DivisionFormatError: a malformed row (nothing is written).
    """
    clock = clock or SystemClock()
    report_progress = progress or (lambda _stage, _done, _total: None)
    if divisions is None:
        divisions = read_divisions(path, grids_per_village=grids_per_village, provinces=provinces)
    report = ImportReport(warnings=list(divisions.warnings))
    total = len(divisions.units)
    report_progress("read", total, total)
    catalog = catalog if catalog is not None else load_catalog()
    now = clock.now()
    async with db.write() as conn:
        await lift_statement_timeout(conn)
        role_ids, report.roles_created = await sync_roles(conn, clock, catalog)
        unit_ids, new_unit_ids, kept = await _upsert_units(
            conn, divisions.units, now, report, report_progress, provinces, revive_retired
        )
        report.positions_created = await _ensure_positions(
            conn, catalog, role_ids, divisions.units, unit_ids, new_unit_ids, kept, now, report_progress
        )
        report.version = await bump_version(conn, clock, scope="tree", detail="division import")
        counts = {k: v for k, v in report.as_dict().items() if k not in ("by_level", "warnings")}
        await record(conn, AuditEntry("org.imported", None, detail={**counts, "path": str(path)}), now)
    for unit in divisions.units:
        report.by_level[unit.level.label] = report.by_level.get(unit.level.label, 0) + 1
    logger.info("division import: %s", {k: v for k, v in report.as_dict().items() if k != "warnings"})
    return report


async def dropped_units(db: Database, divisions: DivisionSet, provinces: Collection[str] | None = None) -> list[int]:
    """Ids of the imported, live units ``divisions`` no longer holds, top-most only (not roots).

    Why: the import dissolves such units in its own transaction, which knows nothing of the work
    in them; ``zzd org import`` retires these first through the structural edit (the positions'
    open tasks go to successors by rule, holders end, conversations hear of it), so a yearly
    division change strands nothing. A unit under another dropped one goes with it; a dropped
    root (a whole province missing from the folder) has no unit above to succeed, and is only
    dissolved as before. ``provinces`` limits the drop to those provinces, as the import does.
    """
    seen = {u.code for u in divisions.units}
    only = frozenset(provinces) if provinces is not None else None
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(units.c.id, units.c.code, units.c.parent_id).where(
                    units.c.imported.is_(True), units.c.dissolved_at.is_(None)
                )
            )
        ).all()
    gone = {int(r[0]): r for r in rows if r[1] not in seen and (only is None or str(r[1])[:2] in only)}
    return sorted(uid for uid, r in gone.items() if r[2] is not None and int(r[2]) not in gone)


async def _upsert_units(
    conn: AsyncConnection,
    records: list[UnitRecord],
    now: datetime,
    report: ImportReport,
    report_progress: Progress,
    provinces: Collection[str] | None = None,
    revive_retired: bool = False,
) -> tuple[dict[str, int], set[int], set[str]]:
    """Returns code → id of every unit, the ids created, and the codes kept retired (no positions made)."""
    cols = (units.c.id, units.c.code, units.c.name, units.c.level, units.c.parent_id, units.c.imported)
    alive = units.c.dissolved_at.is_(None).label("alive")
    existing = {row[1]: row for row in (await conn.execute(select(*cols, alive, units.c.retired_by))).all()}
    unit_ids: dict[str, int] = {code: int(row[0]) for code, row in existing.items()}
    new_ids: set[int] = set()
    new_rows: list[tuple[object, ...]] = []
    changes: list[dict[str, object]] = []
    kept: set[str] = set()  # retired by a person, or under such a unit in the files (records come parents first)
    not_created = 0
    adopted: list[str] = []  # codes of units made through the API that the files list: the import takes them
    nxt = await next_id(conn, units)
    for i, rec in enumerate(records):
        row = existing.get(rec.code)
        under_kept = rec.parent_code is not None and rec.parent_code in kept
        if (
            not revive_retired
            and (under_kept or (row is not None and row[7] is not None))
            and (row is None or not row[6])
        ):
            kept.add(rec.code)  # stays retired (a merge moved its live children away: those are below)
            if row is None:
                not_created += 1
            else:
                report.kept_retired += 1
            continue
        parent_id = unit_ids[rec.parent_code] if rec.parent_code is not None else None
        if under_kept and row is not None:
            parent_id = row[4]  # alive under a unit merged away: it stays where the merge put it
        if row is None:
            uid = nxt
            nxt += 1
            unit_ids[rec.code] = uid
            new_ids.add(uid)
            full, initials = pinyin_of(rec.name)
            new_rows.append((uid, rec.code, rec.name, int(rec.level), parent_id, full, initials, True, now))
            report.created += 1
        elif (row[2], row[3], row[4], row[5], row[6]) != (rec.name, int(rec.level), parent_id, True, True):
            if not row[5]:
                adopted.append(rec.code)
            full, initials = pinyin_of(rec.name)
            changes.append(
                {"uid": row[0], "n": rec.name, "l": int(rec.level), "p": parent_id, "py": full, "pi": initials}
            )  # a revived unit's retired_by is cleared with its dissolved_at
            report.updated += 1
        else:
            report.unchanged += 1
        if i % 100_000 == 0:
            report_progress("units", i, len(records))
    seen = {rec.code for rec in records}
    only = frozenset(provinces) if provinces is not None else None
    gone = [
        int(row[0])
        for code, row in existing.items()
        if code not in seen and row[5] and row[6] and (only is None or code[:2] in only)
    ]
    await bulk_insert(conn, units, _UNIT_COLUMNS, new_rows)
    await sync_sequence(conn, units)
    if changes:
        await conn.execute(
            update(units)
            .where(units.c.id == bindparam("uid"))
            .values(
                name=bindparam("n"),
                level=bindparam("l"),
                parent_id=bindparam("p"),
                pinyin=bindparam("py"),
                pinyin_initials=bindparam("pi"),
                imported=True,
                dissolved_at=None,
                retired_by=None,
            ),
            changes,
        )
    if gone:
        await conn.execute(
            update(units).where(units.c.id == bindparam("uid")).values(dissolved_at=now),
            [{"uid": uid} for uid in gone],
        )
    report.removed = len(gone)
    if adopted:
        # Until 2026-12-05 (广西 audit) such a unit was renamed, moved and made an imported one (given its
        # level's positions, dissolved when a later file drops it) with nothing said.
        shown = ", ".join(adopted[:20]) + (f" and {len(adopted) - 20} more" if len(adopted) > 20 else "")
        report.warnings.append(
            f"{len(adopted)} units created through the API have codes the files list ({shown}): imported as the"
            " files say (name, place, positions) from now on"
        )
    if not_created:
        report.warnings.append(
            f"{not_created} units of the files lie under units retired through the API and were not created"
        )
    report_progress("units", len(records), len(records))
    return unit_ids, new_ids, kept


async def _ensure_positions(
    conn: AsyncConnection,
    catalog: list[RoleSpec],
    role_ids: dict[str, int],
    records: list[UnitRecord],
    unit_ids: dict[str, int],
    new_unit_ids: set[int],
    kept: set[str],
    now: datetime,
    report_progress: Progress,
) -> int:
    """One position per (unit, auto role of the unit's level), unless one exists already."""
    by_level: dict[Level, list[RoleSpec]] = {}
    for spec in catalog:
        if spec.auto:
            for level in spec.levels:
                by_level.setdefault(level, []).append(spec)
    have: set[tuple[int, int]] = set()
    if len(new_unit_ids) < len(records):  # some units existed: look at their positions
        rows = await conn.execute(
            select(positions.c.unit_id, positions.c.role_id).where(positions.c.removed_at.is_(None))
        )
        have = {(int(u), int(r)) for u, r in rows.all()}
    nxt = await next_id(conn, positions)
    new_rows: list[tuple[object, ...]] = []
    for rec in records:
        if rec.code in kept:
            continue
        uid = unit_ids[rec.code]
        for spec in by_level.get(rec.level, ()):
            rid = role_ids[spec.key]
            if uid in new_unit_ids or (uid, rid) not in have:
                new_rows.append((nxt, uid, rid, None, spec.pool, now))
                nxt += 1
    report_progress("positions", 0, len(new_rows))
    await bulk_insert(conn, positions, _POSITION_COLUMNS, new_rows)
    await sync_sequence(conn, positions)
    report_progress("positions", len(new_rows), len(new_rows))
    return len(new_rows)
