"""The operator's account commands (``zzd person create``, ``zzd token issue``): checked and on record.

Found by the admin audit: neither wrote an audit entry (an operator could create an account or
open a session as anyone without trace), and ``person create`` took a password of any length
where activation asks for 8 characters.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from kernel.audit import AuditQuery, query
from kernel.db.database import Database
from tests.org_server import cli_env


def _entries(env: dict[str, str], action: str) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        async with Database(env["ZZD_DATABASE_URL"]) as db:
            return (await query(db, AuditQuery(action=action)))[0]

    return asyncio.run(go())


def test_person_create_refuses_a_short_password_and_is_audited(tmp_path: Path, sqlite_template: Path) -> None:
    from zzd.cli import main

    env = cli_env(tmp_path, sqlite_template)
    runner = CliRunner()
    res = runner.invoke(
        main, ["person", "create", "--login", "chen7", "--name", "陈七", "--password", "short"], env=env
    )
    assert res.exit_code == 1 and "at least 8 characters" in res.output, res.output
    assert _entries(env, "person.created") == []
    res = runner.invoke(main, ["person", "create", "--login", "chen7", "--name", "陈七", "--password", "long-enough"],
                        env=env)  # fmt: skip
    assert res.exit_code == 0, res.output
    pid = json.loads(res.output)["person_id"]
    [entry] = _entries(env, "person.created")
    assert entry["actor_person_id"] is None and entry["unit_id"] is None
    assert entry["detail"] == {"login": "chen7", "person_id": pid, "positions": [], "via": "cli"}
    # a taken login: a clear message, nothing more on record
    res = runner.invoke(main, ["person", "create", "--login", "chen7", "--name", "又一个", "--password", "long-enough"],
                        env=env)  # fmt: skip
    assert res.exit_code == 1 and "taken" in res.output
    assert len(_entries(env, "person.created")) == 1


def test_token_issue_is_audited(tmp_path: Path, sqlite_template: Path) -> None:
    from zzd.cli import main

    env = cli_env(tmp_path, sqlite_template)
    runner = CliRunner()
    res = runner.invoke(main, ["person", "create", "--login", "zhou8", "--name", "周八", "--password", "long-enough"],
                        env=env)  # fmt: skip
    pid = json.loads(res.output)["person_id"]
    res = runner.invoke(main, ["token", "issue", "--login", "nobody"], env=env)
    assert res.exit_code == 1 and "no person" in res.output
    assert _entries(env, "auth.token_issued") == []
    res = runner.invoke(main, ["token", "issue", "--login", "zhou8"], env=env)
    assert res.exit_code == 0, res.output
    [entry] = _entries(env, "auth.token_issued")
    assert entry["actor_person_id"] is None
    assert entry["detail"] == {"login": "zhou8", "person_id": pid}
