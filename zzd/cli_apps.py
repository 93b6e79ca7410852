"""``zzd app …``: the operator's side of the app registry (docs/apps.md).

The operator acts as ``SYSTEM`` (whoever runs ``zzd`` against the database
already holds every permission); changes are audited like an administrator's.
Each command prints one JSON object; ``create`` and ``rotate`` print the
secret, which is never shown again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import click

__all__ = ["app"]


def _unit(ctx: click.Context, param: click.Parameter, raw: str) -> int | str:
    """A ``--unit``/``--subtree`` value read as every API field reads a unit (code or ``#id``).

    A malformed value is a usage error naming the option, before the database is opened:
    read later, it reached the registry as a code no unit has and answered "not found".
    """
    from kernel.errors import BadRequest
    from org_tree.selectors import unit_value

    try:
        return unit_value(raw, f"--{param.name}")
    except BadRequest as exc:
        raise click.BadParameter(exc.message) from exc


def _with_registry(fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``fn(registry)`` against the configured database; domain errors become clean CLI errors."""
    from apps.registry import AppRegistry
    from kernel.clock import SystemClock
    from kernel.db.database import Database
    from kernel.errors import ZzdError
    from org_tree.holder import OrgIndexHolder
    from org_tree.org_service import OrgService
    from org_tree.people import PersonDirectory
    from zzd.cli import _settings

    async def go() -> Any:
        db = Database(_settings().database_url)
        try:
            holder = OrgIndexHolder(db)
            await holder.load()
            clock = SystemClock()
            org = OrgService(db, clock, holder)
            return await fn(AppRegistry(db, clock, org, PersonDirectory(db, clock), lambda: holder.index))
        except ZzdError as exc:
            raise click.ClickException(f"{exc.message} {json.dumps(exc.data, ensure_ascii=False)}") from exc
        finally:
            await db.dispose()

    return asyncio.run(go())


def _echo(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


@click.group()
def app() -> None:
    """Third-party apps: registry, credentials (docs/apps.md)."""


@app.command("create")
@click.option("--name", required=True)
@click.option(
    "--unit", required=True, callback=_unit, help="Owning unit (code or #id): its 'apps' administrators manage the app."
)
@click.option("--subtree", required=True, callback=_unit, help="Unit (code or #id) whose subtree the app may address.")
@click.option("--scope", "scopes", multiple=True, help="notice:send, task:create, …, events:report.filed (repeat).")
@click.option("--visible", "visibility", required=True,
              help="Positions that see the app (可见范围): a text selector like '河长@330802/**'.")  # fmt: skip
@click.option("--owner-position", type=click.IntRange(1, 2**53), default=None)
@click.option("--rate", type=click.IntRange(1, 100_000), default=600, help="Requests per minute.")
def app_create(
    name: str,
    unit: int | str,
    subtree: int | str,
    scopes: tuple[str, ...],
    visibility: str,
    owner_position: int | None,
    rate: int,
) -> None:
    """Register an app; prints its client id and secret (shown once)."""
    from apps.registry import NewApp
    from org_tree.jurisdiction import SYSTEM

    async def go(reg: Any) -> dict[str, Any]:
        spec = NewApp(name, unit, subtree, visibility, scopes, owner_position, rate)
        a, secret = await reg.create(SYSTEM, spec)
        return {**a.to_dict(), "client_secret": secret.secret, "secret_id": secret.id}

    _echo(_with_registry(go))


@app.command("list")
def app_list() -> None:
    """Every app, one JSON object a line."""
    from org_tree.jurisdiction import SYSTEM

    async def go(reg: Any) -> list[dict[str, Any]]:
        return [a.to_dict() for a in await reg.list_apps(SYSTEM)]

    for row in _with_registry(go):
        _echo(row)


@app.command("rotate")
@click.argument("app_id", type=click.IntRange(1, 2**53))
@click.option("--overlap", type=click.IntRange(0, 30 * 86_400), default=86_400, help="Seconds old secrets still work.")
def app_rotate(app_id: int, overlap: int) -> None:
    """A new secret for APP_ID (printed once); the old ones stop after --overlap seconds."""
    from org_tree.jurisdiction import SYSTEM

    async def go(reg: Any) -> dict[str, Any]:
        return (await reg.rotate_secret(SYSTEM, app_id, timedelta(seconds=overlap))).to_dict()  # type: ignore[no-any-return]

    _echo(_with_registry(go))


@app.command("revoke-secret")
@click.argument("app_id", type=click.IntRange(1, 2**53))
@click.argument("secret_id", type=click.IntRange(1, 2**53))
def app_revoke_secret(app_id: int, secret_id: int) -> None:
    """Revoke one secret of APP_ID now (running servers refuse its tokens on the next request)."""
    from org_tree.jurisdiction import SYSTEM

    async def go(reg: Any) -> dict[str, Any]:
        return await reg.revoke_secret(SYSTEM, app_id, secret_id)  # type: ignore[no-any-return]

    _echo(_with_registry(go))


@app.command("disable")
@click.argument("app_id", type=click.IntRange(1, 2**53))
@click.option("--enable", is_flag=True, help="Enable it again instead.")
def app_disable(app_id: int, enable: bool) -> None:
    """Disable (or --enable) APP_ID: its tokens are refused from the next request."""
    from org_tree.jurisdiction import SYSTEM

    async def go(reg: Any) -> dict[str, Any]:
        return (await reg.update(SYSTEM, app_id, disabled=not enable)).to_dict()  # type: ignore[no-any-return]

    _echo(_with_registry(go))
