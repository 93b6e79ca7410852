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


def _create(env: dict[str, str], login: str, name: str) -> int:
    from zzd.cli import main

    res = CliRunner().invoke(main, ["person", "create", "--login", login, "--name", name, "--password", "long-enough"],
                             env=env)  # fmt: skip
    assert res.exit_code == 0, res.output
    return int(json.loads(res.output)["person_id"])


def test_person_create_refuses_a_short_password_and_is_audited(tmp_path: Path, sqlite_template: Path) -> None:
    from zzd.cli import main

    env = cli_env(tmp_path, sqlite_template)
    runner = CliRunner()
    res = runner.invoke(
        main, ["person", "create", "--login", "chen7", "--name", "陈七", "--password", "short"], env=env
    )
    assert res.exit_code == 1 and "at least 8 characters" in res.output, res.output
    assert _entries(env, "person.created") == []
    pid = _create(env, "chen7", "陈七")
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
    pid = _create(env, "zhou8", "周八")
    res = runner.invoke(main, ["token", "issue", "--login", "nobody"], env=env)
    assert res.exit_code == 1 and "no person" in res.output
    assert _entries(env, "auth.token_issued") == []
    res = runner.invoke(main, ["token", "issue", "--login", "zhou8"], env=env)
    assert res.exit_code == 0, res.output
    [entry] = _entries(env, "auth.token_issued")
    assert entry["actor_person_id"] is None
    session = entry["detail"].pop("session")  # the session's id as its owner's list shows it (docs/admin.md)
    assert len(session) == 32 and entry["detail"] == {
        "login": "zhou8",
        "person_id": pid,
        "client_label": "zzd token issue",
    }


def test_the_operator_disables_and_enables_at_the_command_line(tmp_path: Path, sqlite_template: Path) -> None:
    """``zzd person disable`` (docs/admin.md "Disabling an account"); the REST side: test_disable_person.py."""
    from zzd.cli import main

    env = cli_env(tmp_path, sqlite_template)
    runner = CliRunner()
    pid = _create(env, "wu9", "吴九")
    assert runner.invoke(main, ["token", "issue", "--login", "wu9"], env=env).exit_code == 0
    res = runner.invoke(main, ["person", "disable", "--login", "nobody"], env=env)
    assert res.exit_code == 1 and "no person" in res.output
    res = runner.invoke(main, ["person", "disable", "--login", "wu9"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"id": pid, "name": "吴九", "phone": None, "disabled": True, "sessions_ended": 1}
    [entry] = _entries(env, "person.disabled")
    assert entry["actor_person_id"] is None and entry["detail"] == {"person_id": pid, "sessions_ended": 1}
    res = runner.invoke(main, ["token", "issue", "--login", "wu9"], env=env)
    assert res.exit_code == 1 and "disabled" in res.output
    res = runner.invoke(main, ["person", "code", "--login", "wu9"], env=env)  # a code activation would refuse
    assert res.exit_code == 1 and "disabled" in res.output
    assert _entries(env, "person.code_issued") == []
    res = runner.invoke(main, ["person", "disable", "--login", "wu9", "--enable"], env=env)
    assert res.exit_code == 0 and json.loads(res.output)["disabled"] is False, res.output
    assert len(_entries(env, "person.enabled")) == 1


def test_import_does_not_seat_a_disabled_person(tmp_path: Path, sqlite_template: Path) -> None:
    """Found by the admin audit: ``zzd person import`` seated a disabled person (a handover refuses them), so
    the position looked held while nobody received for it. Seats they hold already do not fail a re-run."""
    from zzd.cli import main

    env = cli_env(tmp_path, sqlite_template)
    runner = CliRunner()
    first = tmp_path / "first.csv"
    first.write_text("login,name,phone,positions\nzheng1,郑一,,990101001001:village_director\n", encoding="utf-8")
    assert runner.invoke(main, ["person", "import", str(first), "--no-progress"], env=env).exit_code == 0
    assert runner.invoke(main, ["person", "disable", "--login", "zheng1"], env=env).exit_code == 0
    res = runner.invoke(main, ["person", "import", str(first), "--no-progress", "--codes", str(tmp_path / "c2")],
                        env=env)  # fmt: skip
    assert res.exit_code == 0 and '"unchanged": 1' in res.output, res.output
    more = tmp_path / "more.csv"
    more.write_text("login,name,phone,positions\nzheng1,郑一,,990101001001:village_secretary\n", encoding="utf-8")
    res = runner.invoke(main, ["person", "import", str(more), "--no-progress"], env=env)
    assert res.exit_code == 1 and "line 2" in res.output and "disabled" in res.output, res.output
    assert _entries(env, "person.updated") == []


def test_a_login_of_digits_is_that_login_not_a_person_id(tmp_path: Path, sqlite_template: Path) -> None:
    """Found by the admin audit: ``zzd admin grant --login 3`` granted to person id 3, not to the person whose
    login is ``3``. A login is looked up first; ``#3`` names an id."""
    from zzd.cli import main

    env = cli_env(tmp_path, sqlite_template)
    runner = CliRunner()
    first = _create(env, "first1", "第一")
    digits = _create(env, str(first), "数字")  # the login is the first person's id
    res = runner.invoke(main, ["admin", "grant", "--login", str(first), "--unit", "*", "--perm", "audit"], env=env)
    assert res.exit_code == 0 and json.loads(res.output)["person_id"] == digits, res.output
    res = runner.invoke(main, ["admin", "grant", "--login", f"#{first}", "--unit", "*", "--perm", "audit"], env=env)
    assert res.exit_code == 0 and json.loads(res.output)["person_id"] == first, res.output
    res = runner.invoke(main, ["admin", "grant", "--login", "#999999", "--unit", "*", "--perm", "audit"], env=env)
    assert res.exit_code == 1 and "no such person" in res.output, res.output
