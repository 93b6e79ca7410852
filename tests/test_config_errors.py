"""README "Settings": a bad value stops start-up with the variable's name in the message, never a traceback.

Found by the admin audit: JSON lists that did not parse, an unknown log level, an out-of-range
``ZZD_TCP_USER_TIMEOUT_MS``, bad webhook networks or proxy addresses, and bad JWT keys escaped as
tracebacks or were accepted; the broker's alias was named ``ZZD_ZZD_BROKER_URL``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import TEST_KEYS
from zzd.config import ConfigError, load_settings

BAD = [
    ("ZZD_ALLOWED_ORIGINS", "https://a.example"),  # not a JSON list
    ("ZZD_ALLOWED_ORIGINS", '["a.example"]'),
    ("ZZD_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/8"),
    ("ZZD_WEBHOOK_ALLOWED_NETWORKS", '["bogus"]'),
    ("ZZD_BROKER_URL", "bogus"),
    ("ZZD_REDIS_URL", "bogus"),
    ("ZZD_LOG_LEVEL", "loud"),
    ("ZZD_TCP_USER_TIMEOUT_MS", "99999999999"),
    ("ZZD_FORWARDED_ALLOW_IPS", "proxy.example"),
    ("ZZD_NODE_ID", ""),
    ("ZZD_JWT_KEYS", "bogus"),
    ("ZZD_PORT", "http"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith("ZZD_") and name in str(info.value).split(":")[0], str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ZZD_FORWARDED_ALLOW_IPS", "10.0.0.1, 192.168.0.0/16,::1"),
        ("ZZD_FORWARDED_ALLOW_IPS", "*"),
        ("ZZD_WEBHOOK_ALLOWED_NETWORKS", '["10.8.0.0/16"]'),
        ("ZZD_LOG_LEVEL", "WARNING"),
        ("ZZD_ALLOWED_ORIGINS", "[]"),
    ],
)
def test_good_values_still_load(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    load_settings()


@pytest.mark.parametrize(("name", "value"), [*BAD, ("ZZD_JWT_KEYS_FILE", "/nonexistent/zzd-jwt.keys")])
def test_serve_stops_with_a_message_not_a_traceback(
    name: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zzd.cli import main

    monkeypatch.chdir(tmp_path)
    env = {"ZZD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/zzd.db", "ZZD_JWT_KEYS": TEST_KEYS, name: value}
    if name == "ZZD_JWT_KEYS_FILE":
        env.pop("ZZD_JWT_KEYS")
    res = CliRunner().invoke(main, ["serve", "--no-migrate"], env=env)
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "configuration error: ZZD_" in res.output and name in res.output, res.output
    assert not (tmp_path / "zzd.db").exists()  # stopped before anything was opened


def test_serve_says_why_it_cannot_listen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A port in use or a host that does not resolve: a message naming the address, not an OSError's traceback."""
    import socket

    from zzd.cli import main

    monkeypatch.chdir(tmp_path)
    env = {"ZZD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/zzd.db", "ZZD_JWT_KEYS": TEST_KEYS}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        res = CliRunner().invoke(main, ["serve", "--no-migrate", "--port", str(port)], env=env)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), repr(res.exception)
    assert f"cannot listen on 127.0.0.1:{port}" in res.output and "ZZD_HOST" in res.output, res.output
    res = CliRunner().invoke(main, ["serve", "--no-migrate", "--host", "nowhere.invalid"], env=env)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), repr(res.exception)
    assert "cannot listen on nowhere.invalid:8000" in res.output, res.output


@pytest.mark.parametrize("command", [["admin", "list"], ["org", "stats"], ["token", "issue", "--login", "x"]])
def test_commands_on_a_database_without_the_schema_say_migrate(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the admin audit: a command run before ``zzd migrate`` (or on the wrong file) printed
    SQLAlchemy's traceback ("no such table: org_version")."""
    from zzd.cli import main

    monkeypatch.chdir(tmp_path)
    env = {"ZZD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/empty.db", "ZZD_JWT_KEYS": TEST_KEYS}
    res = CliRunner().invoke(main, command, env=env)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), repr(res.exception)
    assert "zzd migrate" in res.output and "Traceback" not in res.output, res.output


def test_commands_say_when_the_database_cannot_be_reached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from zzd.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"ZZD_DATABASE_URL": f"postgresql+asyncpg://zzd@127.0.0.1:{port}/zzd", "ZZD_JWT_KEYS": TEST_KEYS}
    res = CliRunner().invoke(main, ["admin", "list"], env=env)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), repr(res.exception)
    assert "cannot connect" in res.output and "ZZD_DATABASE_URL" in res.output, res.output
