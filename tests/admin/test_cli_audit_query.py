"""``zzd audit query``'s bad input: a clear message and exit status 2, never a traceback (found by the admin audit)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.org_server import cli_env


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "yesterday"], "--since"),
        (["--until", "2026-13-01T00:00:00+08:00"], "--until"),
        (["--since", "2026-12-01T00:00:00"], "zone"),
    ],
)
def test_a_bad_time_is_a_usage_error(args: list[str], says: str, tmp_path: Path, sqlite_template: Path) -> None:
    from zzd.cli import main

    env = cli_env(tmp_path, sqlite_template)
    res = CliRunner().invoke(main, ["audit", "query", *args], env=env)
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert says in res.output and "ISO 8601" in res.output, res.output


def test_a_good_time_queries(tmp_path: Path, sqlite_template: Path) -> None:
    from zzd.cli import main

    env = cli_env(tmp_path, sqlite_template)
    res = CliRunner().invoke(main, ["audit", "query", "--since", "2026-12-01T00:00:00+08:00"], env=env)
    assert res.exit_code == 0, res.output
