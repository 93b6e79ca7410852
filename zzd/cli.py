"""The ``zzd`` command: serve, migrate, manage persons and tokens, seed demo data."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import click

from zzd.config import ConfigError, Settings, load_settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEMO_PEOPLE = [("zhangsan", "张三"), ("lisi", "李四"), ("wangwu", "王五"), ("zhaoliu", "赵六")]
DEMO_PASSWORD = "zzd-demo-2026"  # noqa: S105 - published demo credential, printed by `zzd demo seed`


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from exc


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(fn())  # type: ignore[arg-type]


def _configure_logging(level: str, fmt: str = "text") -> None:
    from zzd.logs import configure_logging

    configure_logging(level, fmt)


class _Main(click.Group):
    """The ``zzd`` group: a database that is not there or not migrated is a message, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import DBAPIError

        try:
            return super().invoke(ctx)
        except DBAPIError as exc:
            text = str(exc.orig)
            if "no such table" in text or "does not exist" in text:
                raise click.ClickException(f"the database has no ZZD schema ({text}): run `zzd migrate` first") from exc
            raise
        except (ConnectionRefusedError, socket.gaierror) as exc:  # the database, or with `serve` also Redis
            raise click.ClickException(f"cannot connect ({exc}): check ZZD_DATABASE_URL and ZZD_BROKER_URL") from exc


@click.group(cls=_Main)
@click.version_option(package_name="zzd", prog_name="zzd")
def main() -> None:
    """ZZD: government workplace messaging addressed to positions."""


@main.command()
@click.option("--host", default=None, help="Listen address (ZZD_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (ZZD_PORT, default 8000).")
@click.option("--database-url", default=None, help="ZZD_DATABASE_URL")
@click.option("--broker-url", default=None, help="ZZD_BROKER_URL (or ZZD_REDIS_URL)")
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="Upgrade the schema before serving.")
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Server processes sharing the port (ZZD_WORKERS, default 1); above 1 needs PostgreSQL and Redis.",
)
def serve(
    host: str | None,
    port: int | None,
    database_url: str | None,
    broker_url: str | None,
    migrate: bool,
    workers: int | None,
) -> None:
    """Run the server (embedded SQLite + in-process broker unless configured otherwise)."""
    from zzd.delivery_process import DeliveryRefused, check_delivery
    from zzd.migrate import upgrade
    from zzd.server import CannotListen
    from zzd.server import serve as run_server
    from zzd.workers import WorkersRefused, check_workers, serve_workers

    settings = _settings(host=host, port=port, database_url=database_url, broker_url=broker_url, workers=workers)
    try:
        check_workers(settings, settings.workers)
        check_delivery(settings, process=False)
    except (WorkersRefused, DeliveryRefused) as exc:
        raise click.ClickException(str(exc)) from exc
    _configure_logging(settings.log_level, settings.log_format)
    try:
        settings.signing_keys()  # fail now, naming the setting, not on the first login
        audit_key = settings.audit_secret()  # made beside the SQLite file on first start
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from exc
    if migrate:
        upgrade(settings.database_url, audit_key=audit_key)
    try:
        if settings.workers == 1:
            run_server(settings)
        else:
            sys.exit(serve_workers(settings, settings.workers))
    except CannotListen as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--database-url", default=None, help="ZZD_DATABASE_URL")
@click.option("--broker-url", default=None, help="ZZD_BROKER_URL (or ZZD_REDIS_URL); Redis is required")
@click.option("--nice", type=click.IntRange(0, 19), default=0, show_default=True,
              help="Lower this process's CPU priority, so a busy machine serves the servers (chat) first.")  # fmt: skip
def delivery(database_url: str | None, broker_url: str | None, nice: int) -> None:
    """Send webhooks in a process of its own (servers run with ZZD_DELIVERY_IN_SERVER=false); run one or more."""
    from zzd.delivery_process import DeliveryRefused, check_delivery, serve_delivery

    settings = _settings(database_url=database_url, broker_url=broker_url)
    try:
        check_delivery(settings, process=True)
    except DeliveryRefused as exc:
        raise click.ClickException(str(exc)) from exc
    _configure_logging(settings.log_level, settings.log_format)
    serve_delivery(settings, nice)


@main.command()
@click.option("--database-url", default=None, help="ZZD_DATABASE_URL")
def migrate(database_url: str | None) -> None:
    """Upgrade the database schema to the newest revision."""
    from zzd.migrate import upgrade

    settings = _settings(database_url=database_url)
    try:
        audit_key = settings.audit_secret()  # revision 0019 re-seals an existing audit log with it
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from exc
    upgrade(settings.database_url, audit_key=audit_key)
    click.echo(f"schema is at head ({settings.database_url.split('://')[0]})")


@main.group()
def person() -> None:
    """Create persons and manage their accounts."""


@person.command("create")
@click.option("--login", required=True)
@click.option("--name", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def person_create(login: str, name: str, password: str) -> None:
    """Create a person who can log in (audited as ``person.created``)."""
    if len(password) < 8:  # the rule activation applies (POST /api/v1/auth/activate)
        raise click.ClickException("the password must have at least 8 characters")

    async def go() -> int:
        from kernel.clock import SystemClock
        from kernel.db.database import Database
        from kernel.errors import ZzdError
        from org_tree.people import PersonDirectory
        from zzd.auth.passwords import Passwords

        db = Database(_settings().database_url)
        try:
            p = await PersonDirectory(db, SystemClock()).create(
                name, login=login, password_hash=await Passwords().hash(password), audit_via="cli"
            )
            return p.id
        except ZzdError as exc:
            raise click.ClickException(exc.message) from exc
        finally:
            await db.dispose()

    click.echo(json.dumps({"person_id": _run(go), "login": login}))


@main.group()
def token() -> None:
    """Issue tokens as an operator (for scripts and support)."""


@token.command("issue")
@click.option("--login", required=True)
def token_issue(login: str) -> None:
    """Open a session for LOGIN and print an access and a refresh token (audited as ``auth.token_issued``)."""

    async def go() -> dict[str, Any]:
        from kernel.audit import AuditEntry
        from zzd.services import Services

        s = Services.build(_settings())
        try:
            p = await s.persons.by_login(login)
            if p is None:
                raise click.ClickException(f"no person with login {login!r}")
            if p.disabled:
                raise click.ClickException(f"{login!r} is disabled (zzd person disable --login {login} --enable)")
            entry = AuditEntry("auth.token_issued", None, detail={"login": p.login, "person_id": p.id})
            issued = await s.sessions.open(p.id, client_label="zzd token issue", audit=entry)
            return {
                "person_id": p.id,
                "access_token": s.tokens.issue(p.id, issued.session_id),
                "refresh_token": issued.refresh_token,
                "expires_in": s.tokens.ttl_seconds,
            }
        finally:
            await s.db.dispose()

    click.echo(json.dumps(_run(go)))


@main.group()
def demo() -> None:
    """Demo data."""


@demo.command("seed")
def demo_seed() -> None:
    """Create the demo persons (idempotent) and print their logins."""

    async def go() -> list[dict[str, Any]]:
        from kernel.clock import SystemClock
        from kernel.db.database import Database
        from org_tree.people import PersonDirectory
        from zzd.auth.passwords import Passwords

        db = Database(_settings().database_url)
        directory = PersonDirectory(db, SystemClock())
        hashed = await Passwords().hash(DEMO_PASSWORD)
        out: list[dict[str, Any]] = []
        try:
            for login, name in DEMO_PEOPLE:
                existing = await directory.by_login(login)
                p = existing or await directory.create(name, login=login, password_hash=hashed)
                out.append({"person_id": p.id, "login": login, "name": name, "password": DEMO_PASSWORD})
            await _demo_positions(db, [row["person_id"] for row in out], out)
        finally:
            await db.dispose()
        return out

    for row in _run(go):
        click.echo(json.dumps(row, ensure_ascii=False))


def _register_org() -> None:
    from zzd.cli_admin import admin, audit, person_code, person_disable, person_import
    from zzd.cli_apps import app
    from zzd.cli_org import org

    main.add_command(org)
    main.add_command(app)
    main.add_command(admin)
    main.add_command(audit)
    person.add_command(person_import)
    person.add_command(person_code)
    person.add_command(person_disable)


_register_org()


async def _demo_positions(db: Any, person_ids: list[int], out: list[dict[str, Any]]) -> None:
    """Seat the demo people in 柯城区 if the tree is imported.

    A county head, a village secretary, a grid worker of that village and the
    village's 河长 — the two ends of a river-litter report, so
    ``scripts/demo_loop.py --reporter wangwu --owner zhaoliu`` walks the closed loop.
    """
    from kernel.clock import SystemClock
    from kernel.errors import Conflict, NotFound
    from org_tree.holder import OrgIndexHolder
    from org_tree.jurisdiction import SYSTEM
    from org_tree.org_service import OrgService

    holder = OrgIndexHolder(db)
    svc = OrgService(db, SystemClock(), holder)
    idx = await holder.load()
    try:
        county = idx.unit("330802")
    except NotFound:
        return
    village = next(u for u in idx.subtree(county, 2) if idx.unit_level(u) == idx.unit_level(county) + 2)
    grid = idx.children(village)[0]
    admin = SYSTEM
    wanted = [(county, "county_head"), (village, "village_secretary"), (grid, "grid_worker"), (village, "river_chief")]
    for (u, role_key), pid, row in zip(wanted, person_ids, out, strict=True):
        role = idx.role_id(role_key)
        slot = next(k for k in idx.unit_slots(u) if idx.position_role_id(k) == role)
        position_id = idx.position_id(slot)
        if pid not in idx.primary_holders(slot):
            try:
                await svc.handover(admin, position_id, pid)
            except (Conflict, NotFound):
                pass
        row["position"] = {"id": position_id, "role": idx.roles[role].name, "unit": "/".join(idx.unit_path(u))}


@main.group()
def maintenance() -> None:
    """Housekeeping."""


@maintenance.command("prune")
@click.option(
    "--event-days",
    type=click.IntRange(min=1),
    default=None,
    help="Override ZZD_EVENT_RETENTION_DAYS for this run (≥ 1).",
)
def prune(event_days: int | None) -> None:
    """Run one whole retention pass now (events, published outbox rows, receipts when configured).

    Clients whose cursor falls below what was deleted get resync_required. The
    server runs the same pass by itself (one process at a time, at most hourly).
    """

    async def go() -> dict[str, int | bool]:
        from kernel.clock import SystemClock
        from kernel.db.database import Database
        from zzd.services import retention

        settings = _settings(event_retention_days=event_days)
        db = Database(settings.database_url)
        try:
            job = retention(db, SystemClock(), settings)
            job.pass_every = timedelta(0)
            done = await job.run_until_complete()
        finally:
            await db.dispose()
        return {"ran": done.ran, "events": done.events, "streams": done.streams, "outbox": done.outbox,
                "receipts": done.receipts}  # fmt: skip

    click.echo(json.dumps(_run(go)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
