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


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_every_dependency_is_pinned_in_the_lock_file_at_the_installed_version() -> None:
    """A dependency added to pyproject.toml without re-running scripts/lock.sh fails here."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    lock = Path(__file__).resolve().parent.parent / "requirements.lock"
    pinned = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, ver = line.partition("==")
            pinned[_canonical(name)] = ver
    seen: set[str] = set()
    todo = [("zzd", frozenset({"dev"}))]
    while todo:
        name, extras = todo.pop()
        dist = distribution(name)
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            key = _canonical(req.name)
            if key in seen:
                continue
            seen.add(key)
            try:
                installed = distribution(req.name).version
            except PackageNotFoundError:
                continue  # an optional dependency of a dependency that this platform does not install
            assert key in pinned, f"{req.name} is not in requirements.lock: run scripts/lock.sh"
            assert pinned[key] == installed, f"{req.name}: installed {installed}, locked {pinned[key]}"
            todo.append((req.name, frozenset(req.extras)))
