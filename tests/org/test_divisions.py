"""Reading the division files: real Zhejiang counts, quirks as warnings, malformed rows as errors."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path

import pytest

from org_tree.divisions import DivisionFormatError, Level, read_divisions
from tests.org.conftest import ZHEJIANG, write_mini_divisions


def test_zhejiang_counts_and_grids() -> None:
    ds = read_divisions(ZHEJIANG, grids_per_village=3)
    counts = Counter(u.level for u in ds.units)
    assert counts == {
        Level.PROVINCE: 1,
        Level.CITY: 11,
        Level.COUNTY: 90,
        Level.TOWNSHIP: 1387,
        Level.VILLAGE: 25547,
        Level.GRID: 3 * 25547,
    }
    assert ds.warnings == []
    codes = [u.code for u in ds.units]
    assert len(set(codes)) == len(codes)
    by_code = {u.code: u for u in ds.units}
    assert by_code["330802"].name == "柯城区"
    grid = by_code["330802005001002"]
    assert (grid.name, grid.parent_code, grid.level) == ("第2网格", "330802005001", Level.GRID)
    seen: set[str] = set()
    for u in ds.units:  # parents always come first
        assert u.parent_code is None or u.parent_code in seen
        seen.add(u.code)


def test_gzip_and_placeholder_quirks(tmp_path: Path) -> None:
    folder = write_mini_divisions(tmp_path / "gz")
    for f in folder.glob("*.csv"):
        with open(f, "rb") as src, gzip.open(f.with_suffix(".csv.gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        f.unlink()
    ds = read_divisions(folder, grids_per_village=2)
    assert any("has no county level" in w and "990200" in w for w in ds.warnings)
    assert sum(u.level is Level.GRID for u in ds.units) == 2 * 12


def test_orphan_attaches_to_nearest_ancestor(tmp_path: Path) -> None:
    folder = write_mini_divisions(tmp_path / "orphan")
    with open(folder / "villages.csv", "a", encoding="utf-8") as fh:
        fh.write('990101777001,"孤村",990101777,99,9901,990101\n')
    ds = read_divisions(folder, grids_per_village=0)
    orphan = next(u for u in ds.units if u.code == "990101777001")
    assert orphan.parent_code == "990101"
    assert any("990101777" in w and "attached" in w for w in ds.warnings)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('990101001009,"坏村",990101001,99,9901', "expected 6 columns"),
        ('99010100100X,"坏村",990101001,99,9901,990101', "is not 12 digits"),
        ('990101001001,"重复",990101001,99,9901,990101', "duplicate code"),
        ('990101001009,"",990101001,99,9901,990101', "empty name"),
        ('990101001009,"错父",990102001,99,9901,990102', "does not start with its parent"),
    ],
)
def test_malformed_row_names_file_line_reason(tmp_path: Path, line: str, reason: str) -> None:
    folder = write_mini_divisions(tmp_path / "bad")
    with open(folder / "villages.csv", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    with pytest.raises(DivisionFormatError) as info:
        read_divisions(folder)
    err = info.value
    assert err.data["file"] == "villages.csv"
    assert err.data["line"] == 14  # header + 12 villages + the bad row
    assert reason in err.data["reason"]
    assert "villages.csv:14" in str(err)


def test_missing_file_and_bad_grid_count(tmp_path: Path) -> None:
    folder = write_mini_divisions(tmp_path / "missing")
    (folder / "streets.csv").unlink()
    with pytest.raises(DivisionFormatError, match="streets.csv"):
        read_divisions(folder)
    with pytest.raises(Exception, match="grids_per_village"):
        read_divisions(ZHEJIANG, grids_per_village=1000)
