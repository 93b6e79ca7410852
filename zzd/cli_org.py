"""``zzd org …``: import divisions, generate synthetic people, show counts."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from zzd.config import Settings

__all__ = ["org"]

#: The Zhejiang division files shipped with the project (WTFPL, see their LICENSE).


class _Bars:
    """One tqdm bar per stage of a long import; silent when not on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._bars: dict[str, tqdm[Any]] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit="row", leave=False)
        bar.n = done
        bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def _settings() -> Settings:
    from zzd.cli import _settings as load

    return load()


@click.group()
def org() -> None:
    """The org tree: units, positions and the people who hold them."""


@org.command("import")
@click.argument("path", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--grids", "grids", type=click.IntRange(0, 50), default=3, show_default=True, help="Grids per village.")
@click.option("--if-empty", is_flag=True, help="Do nothing when units already exist (for the demo).")
@click.option("--province", "provinces", multiple=True, metavar="CODE",
              help="Only this province's rows (2-digit code, e.g. 62; repeatable): one province out of the "
                   "national files. Other provinces' units are left as they are.")  # fmt: skip
@click.option("--revive-retired", is_flag=True,
              help="Also revive the units an administrator retired or merged away through the API (by default "
                   "they stay retired, counted as kept_retired), and so the admin grants over them.")  # fmt: skip
def import_cmd(path: Path | None, grids: int, if_empty: bool, provinces: tuple[str, ...], revive_retired: bool) -> None:
    """Import NBS division CSVs (plain or .gz) from PATH; default: the shipped Zhejiang files.

    Idempotent: re-importing upserts by code and prints created/updated/unchanged/removed.
    Without --province, imported units missing from PATH are dissolved (removed); with it,
    only those of the provinces named. Such units are first retired as an administrator's
    retirement would (their open tasks go to successors by rule; listed under "retired").
    A unit an administrator retired or merged away through the API stays retired, with the
    units of the files under it ("kept_retired"), unless --revive-retired.
    A malformed row aborts the whole import with its file, line and reason.
    """
    from kernel.db.database import Database
    from kernel.errors import BadRequest
    from org_tree.divisions import SHIPPED_ZHEJIANG, read_divisions
    from org_tree.importer import dropped_units, import_divisions
    from org_tree.org_service import OrgService

    async def go() -> dict[str, Any]:
        db = Database(_settings().database_url)
        bars = _Bars(enabled=sys.stderr.isatty())
        try:
            if if_empty:
                from kernel.clock import SystemClock
                from org_tree.holder import OrgIndexHolder

                stats = await OrgService(db, SystemClock(), OrgIndexHolder(db)).stats()
                if sum(stats["units"].values()):
                    return {"skipped": "units exist", "units": stats["units"]}
            for code in provinces:
                if not (len(code) == 2 and code.isascii() and code.isdigit()):
                    raise click.BadParameter(f"{code!r} is not a 2-digit province code", param_hint="--province")
            folder = path or SHIPPED_ZHEJIANG
            divisions = read_divisions(folder, grids_per_village=grids, provinces=provinces or None)
            retired = await _retire_dropped(await dropped_units(db, divisions, provinces or None))
            report = await import_divisions(
                db,
                folder,
                grids_per_village=grids,
                progress=bars,
                provinces=provinces or None,
                divisions=divisions,
                revive_retired=revive_retired,
            )
            return {**report.as_dict(), "retired": retired}
        except BadRequest as exc:  # DivisionFormatError included; Conflict: open work with no successor
            raise click.ClickException(str(exc)) from exc
        finally:
            bars.close()
            await db.dispose()

    click.echo(json.dumps(asyncio.run(go()), ensure_ascii=False, indent=2, default=str))


async def _retire_dropped(unit_ids: list[int]) -> list[dict[str, Any]]:
    """Retire the units a re-import drops, each as ``POST /api/v1/org/units/{ref}/retire`` by the system.

    Their positions' open tasks go to the successor by rule in the same transaction as the
    retirement (docs/org-structure.md); an open task with none refuses it (409, nothing of that
    unit changed) and the import stops before writing, naming the positions. Each is on the audit
    record as ``org.unit_retired`` with no actor. Running servers pick the change up as any other.
    """
    if not unit_ids:
        return []
    from kernel.errors import Conflict
    from org_tree.jurisdiction import SYSTEM
    from zzd.services import Services

    s = Services.build(_settings())
    try:
        await s.org_index.load()
        out: list[dict[str, Any]] = []
        for uid in unit_ids:
            if s.org_index.index.find_unit(uid) < 0:  # under a unit dissolved before: not in the live tree
                continue
            try:
                out.append(await s.org.structure.retire_unit(SYSTEM, uid))
            except Conflict as exc:
                raise click.ClickException(
                    f"unit #{uid}: {exc} ({json.dumps(exc.data)}); the units retired before it stay retired,"
                    " nothing was imported"
                ) from exc
        return out
    finally:
        await s.db.dispose()


@org.command("people")
@click.option("--persons", "persons_target", type=click.IntRange(0, None), default=None,
              help="Persons to create at least: every vacant single position but about 1 % gets its own holder "
                   "whatever this says (the 1 % stay vacant on purpose, so the vacancy fallback has cases; the "
                   "answer's \"vacant_positions\" counts them), and the pools (兼职网格员) grow to reach it "
                   "(default: 3 a pool).")  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True)
def people_cmd(persons_target: int | None, seed: int) -> None:
    """Fill vacant positions with synthetic people (deterministic by seed)."""
    from kernel.db.database import Database
    from org_tree.synthetic import generate_people

    async def go() -> dict[str, Any]:
        db = Database(_settings().database_url)
        bars = _Bars(enabled=sys.stderr.isatty())
        try:
            report = await generate_people(db, persons_target=persons_target, seed=seed, progress=bars)
            return {k: getattr(report, k) for k in report.__dataclass_fields__}
        finally:
            bars.close()
            await db.dispose()

    click.echo(json.dumps(asyncio.run(go()), indent=2))


@org.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stats_cmd(as_json: bool) -> None:
    """Unit counts per level and the numbers of positions, assignments and persons."""
    from kernel.clock import SystemClock
    from kernel.db.database import Database
    from org_tree.holder import OrgIndexHolder
    from org_tree.org_service import OrgService

    async def go() -> dict[str, Any]:
        db = Database(_settings().database_url)
        try:
            return await OrgService(db, SystemClock(), OrgIndexHolder(db)).stats()
        finally:
            await db.dispose()

    out = asyncio.run(go())
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    for level, n in out["units"].items():
        click.echo(f"{level:>10}  {n:>9,}")
    for key in ("positions", "assignments", "persons"):
        click.echo(f"{key:>10}  {out[key]:>9,}")
