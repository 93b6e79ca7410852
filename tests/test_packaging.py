"""What an installed wheel carries: the division data `zzd org import` defaults to, the licence, the version."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner

from zzd.cli import main


def test_version_option_prints_the_installed_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"zzd, version {version('zzd')}"


@pytest.mark.slow
def test_wheel_ships_divisions_licence_and_spdx_metadata(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(root)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("zzd-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for f in ("provinces.csv", "cities.csv", "areas.csv", "streets.csv", "villages.csv", "LICENSE"):
            assert f"org_tree/data/divisions/zhejiang/{f}" in names
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = zf.read(metadata).decode()
        assert "License-Expression: Apache-2.0" in text
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
