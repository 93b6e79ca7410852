"""Reading the NBS division CSVs (统计用区划代码) into unit records.

Why a reader of its own: the published files are the one source of real unit
codes and names, but they carry quirks (cities whose "areas" are placeholders
such as 东莞市 under 东莞市, municipalities whose cities are named 市辖区). An
import must cope with those and report them as warnings, while a row that is
simply malformed stops the import with the file, line and reason, before
anything is written.

The sixth level, the grid (网格), exists in no public data: grids are
generated under every village with deterministic codes (village code + three
digits) and names (第1网格, 第2网格 …), so re-importing is idempotent.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from importlib.resources import files
from pathlib import Path

from kernel.errors import BadRequest

logger = logging.getLogger(__name__)

__all__ = [
    "SHIPPED_ZHEJIANG",
    "DivisionFormatError",
    "DivisionSet",
    "Level",
    "UnitRecord",
    "grid_records",
    "read_divisions",
]


#: The NBS 2023 divisions of Zhejiang shipped inside the package (``org_tree/data``), so that
#: ``zzd org import`` with no path works from an installed wheel as well as from a checkout.
SHIPPED_ZHEJIANG = Path(str(files("org_tree") / "data" / "divisions" / "zhejiang"))


class Level(IntEnum):
    """The six levels of the org tree; the value is the depth (province = 1)."""

    PROVINCE = 1
    CITY = 2
    COUNTY = 3
    TOWNSHIP = 4
    VILLAGE = 5
    GRID = 6

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Level:
        """``"village"`` or ``"5"`` → ``Level.VILLAGE``; anything else is a ``BadRequest``."""
        key = text.strip().lower()
        if key.isdigit() and 1 <= int(key) <= 6:
            return cls(int(key))
        try:
            return cls[key.upper()]
        except KeyError:
            raise BadRequest(f"unknown level {text!r}", data={"level": text}) from None


class DivisionFormatError(BadRequest):
    """A row of a division file that cannot be read; nothing of the import is applied."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}", data={"file": file, "line": line, "reason": reason})


@dataclass(frozen=True, slots=True)
class UnitRecord:
    """One unit as read from the files (or generated, for grids)."""

    code: str
    name: str
    level: Level
    parent_code: str | None


@dataclass(slots=True)
class DivisionSet:
    """Units in parent-before-child order, plus the quirks met on the way."""

    units: list[UnitRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# file stem, level, code length, column holding the parent code
_FILES: tuple[tuple[str, Level, int, str | None], ...] = (
    ("provinces", Level.PROVINCE, 2, None),
    ("cities", Level.CITY, 4, "provinceCode"),
    ("areas", Level.COUNTY, 6, "cityCode"),
    ("streets", Level.TOWNSHIP, 9, "areaCode"),
    ("villages", Level.VILLAGE, 12, "streetCode"),
)
# Higher ancestors named on each row, tried in order when the direct parent is missing.
_FALLBACK_PARENTS = {
    Level.COUNTY: ("provinceCode",),
    Level.TOWNSHIP: ("cityCode", "provinceCode"),
    Level.VILLAGE: ("areaCode", "cityCode", "provinceCode"),
}
_PLACEHOLDER_NAMES = {"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"}
MAX_GRIDS_PER_VILLAGE = 999


def _open(path: Path, stem: str) -> tuple[io.TextIOBase, str]:
    plain, gz = path / f"{stem}.csv", path / f"{stem}.csv.gz"
    if plain.exists():
        return open(plain, encoding="utf-8-sig", newline=""), plain.name  # noqa: SIM115
    if gz.exists():
        return io.TextIOWrapper(gzip.open(gz, "rb"), encoding="utf-8-sig", newline=""), gz.name
    raise DivisionFormatError(f"{stem}.csv", 0, f"missing file {stem}.csv or {stem}.csv.gz in {path}")


def grid_records(village_code: str, count: int) -> Iterator[UnitRecord]:
    """The generated grids of one village: codes ``<village>001…``, names 第1网格…."""
    for i in range(1, count + 1):
        yield UnitRecord(f"{village_code}{i:03d}", f"第{i}网格", Level.GRID, village_code)


def read_divisions(
    path: str | Path, *, grids_per_village: int = 3, provinces: Collection[str] | None = None
) -> DivisionSet:
    """Read the five division files under ``path`` and generate grids.

    Args:
        path: folder holding ``provinces.csv`` … ``villages.csv`` (each plain or ``.gz``).
        grids_per_village: grids generated under each village (0 for none).
        provinces: only the rows of these provinces (2-digit codes): one province out of the
            national files; None: every row.

    Returns:
        every unit in parent-before-child order, and warnings for the quirks met.

    Raises:
        DivisionFormatError: a row is malformed (wrong columns, bad code, duplicate
            code, empty name); the message names file, line and reason.
    """
    if not 0 <= grids_per_village <= MAX_GRIDS_PER_VILLAGE:
        raise BadRequest(f"grids_per_village must be within 0..{MAX_GRIDS_PER_VILLAGE}")
    folder = Path(path)
    if not folder.is_dir():
        raise BadRequest(f"division folder {str(folder)!r} does not exist", data={"path": str(folder)})
    out = DivisionSet()
    names: dict[str, str] = {}  # code → name of every unit accepted so far
    levels: dict[str, Level] = {}
    only = frozenset(provinces) if provinces is not None else None
    for stem, level, width, parent_col in _FILES:
        handle, fname = _open(folder, stem)
        with handle:
            _read_file(csv.reader(handle), fname, level, width, parent_col, names, levels, out, only)
    if only is not None:
        missing = sorted(only - {u.code for u in out.units if u.level is Level.PROVINCE})
        if missing:
            raise BadRequest(f"no province {', '.join(missing)} in {folder}", data={"provinces": missing})
    if grids_per_village:
        villages = [u.code for u in out.units if u.level is Level.VILLAGE]
        for code in villages:
            out.units.extend(grid_records(code, grids_per_village))
    for w in out.warnings:
        logger.warning("divisions: %s", w)
    return out


def _read_file(
    rows: Iterator[list[str]],
    fname: str,
    level: Level,
    width: int,
    parent_col: str | None,
    names: dict[str, str],
    levels: dict[str, Level],
    out: DivisionSet,
    only: frozenset[str] | None = None,
) -> None:
    """``only``: the province codes whose rows to take (the others are skipped unread)."""
    header = next(rows, None)
    if header is None:
        raise DivisionFormatError(fname, 1, "empty file: no header row")
    header = [h.strip() for h in header]
    if "code" not in header or "name" not in header or (parent_col and parent_col not in header):
        raise DivisionFormatError(fname, 1, f"header must contain code, name{', ' + parent_col if parent_col else ''}")
    col = {h: i for i, h in enumerate(header)}
    for lineno, row in enumerate(rows, start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if only is not None and (len(row) <= col["code"] or row[col["code"]].strip()[:2] not in only):
            continue  # another province's row
        if len(row) != len(header):
            raise DivisionFormatError(fname, lineno, f"expected {len(header)} columns, found {len(row)}")
        code, name = row[col["code"]].strip(), row[col["name"]].strip()
        if not (code.isascii() and code.isdigit()) or len(code) != width:
            raise DivisionFormatError(fname, lineno, f"code {code!r} is not {width} digits")
        if not name:
            raise DivisionFormatError(fname, lineno, f"unit {code} has an empty name")
        if code in names:
            raise DivisionFormatError(fname, lineno, f"duplicate code {code}")
        parent: str | None = None
        if parent_col is not None:
            parent = _parent_of(row, col, code, level, parent_col, names, levels, fname, lineno, out)
            if parent is None:
                continue
        if name in _PLACEHOLDER_NAMES:
            out.warnings.append(f"{fname}:{lineno}: placeholder name {name!r} for {code} kept as is")
        elif level is Level.COUNTY and parent is not None and name == names.get(parent) and code.endswith("00"):
            out.warnings.append(
                f"{fname}:{lineno}: {name} ({parent}) has no county level; placeholder county {code} kept"
            )
        names[code] = name
        levels[code] = level
        out.units.append(UnitRecord(code, name, level, parent))


def _parent_of(
    row: list[str],
    col: dict[str, int],
    code: str,
    level: Level,
    parent_col: str,
    names: dict[str, str],
    levels: dict[str, Level],
    fname: str,
    lineno: int,
    out: DivisionSet,
) -> str | None:
    """The parent code of a row, attaching orphans to the nearest known ancestor (with a warning)."""
    parent = row[col[parent_col]].strip()
    if not code.startswith(parent):
        raise DivisionFormatError(fname, lineno, f"code {code} does not start with its parent code {parent!r}")
    if parent in names and levels[parent] == level - 1:
        return parent
    for alt_col in _FALLBACK_PARENTS.get(level, ()):
        alt = row[col[alt_col]].strip() if alt_col in col else ""
        if alt in names and code.startswith(alt):
            out.warnings.append(f"{fname}:{lineno}: parent {parent} of {code} is missing; attached to {alt}")
            return alt
    out.warnings.append(f"{fname}:{lineno}: parent {parent} of {code} is missing; row skipped")
    return None
