"""``zzd admin …``, ``zzd audit …`` and ``zzd person import``: the operator's side of trust.

The operator at the command line acts as ``SYSTEM`` (every permission, whole
tree): whoever can run ``zzd`` against the database already holds it. What
they do is audited like any administrator's change (actor: none).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from zzd.config import Settings

T = TypeVar("T")

__all__ = ["admin", "audit", "person_code", "person_disable", "person_import"]


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(fn())  # type: ignore[arg-type]


def _url() -> str:
    from zzd.cli import _settings

    return _settings().database_url


async def _person_id(db: Any, who: str) -> int:
    """A login, else ``#id`` (or bare digits that are nobody's login) as a person id.

    The login comes first: a login may be all digits (``3``), and a grant must not go to person 3 then.
    """
    from kernel.clock import SystemClock
    from org_tree.people import PersonDirectory

    if who.startswith("#") and who[1:].isascii() and who[1:].isdigit():
        return int(who[1:])
    p = await PersonDirectory(db, SystemClock()).by_login(who)
    if p is not None:
        return p.id
    if who.isascii() and who.isdigit():
        return int(who)
    raise click.ClickException(f"no person with login {who!r}")


async def _org(db: Any) -> Any:
    from kernel.clock import SystemClock
    from org_tree.grant_service import GrantService
    from org_tree.holder import OrgIndexHolder
    from org_tree.org_service import OrgService

    holder = OrgIndexHolder(db)
    await holder.load()
    org = OrgService(db, SystemClock(), holder)
    return holder, GrantService(db, SystemClock(), holder, org)


@click.group()
def admin() -> None:
    """Administrators: grants of permissions over unit subtrees (docs/admin.md)."""


@admin.command("grant")
@click.option("--login", required=True, help="The person: login, or #id.")
@click.option("--unit", required=True, help="Unit code or #id whose subtree the grant covers; '*' for the whole tree.")
@click.option("--perm", "perms", multiple=True, required=True,
              help="org, assignments, roles, settings, apps, audit, grants (repeat), or 'all'.")  # fmt: skip
def admin_grant(login: str, unit: str, perms: tuple[str, ...]) -> None:
    """Give LOGIN permissions over UNIT's subtree (the first administrator is made this way)."""
    from kernel.db.database import Database
    from kernel.errors import ZzdError
    from org_tree.grants import ALL_PERMS, parse_perms
    from org_tree.jurisdiction import SYSTEM

    async def go() -> dict[str, Any]:
        db = Database(_url())
        try:
            holder, grants = await _org(db)
            wanted = ALL_PERMS if "all" in perms else parse_perms(perms)
            ref: int | str | None = None if unit == "*" else (int(unit[1:]) if unit.startswith("#") else unit)
            g = await grants.grant(SYSTEM, await _person_id(db, login), ref, wanted)
            return g.to_dict(holder.index)  # type: ignore[no-any-return]
        except ZzdError as exc:
            raise click.ClickException(f"{exc.message} {json.dumps(exc.data, ensure_ascii=False)}") from exc
        finally:
            await db.dispose()

    click.echo(json.dumps(_run(go), ensure_ascii=False))


@admin.command("revoke")
@click.argument("grant_id", type=click.IntRange(1, 2**53))
def admin_revoke(grant_id: int) -> None:
    """Revoke grant GRANT_ID."""
    from kernel.db.database import Database
    from kernel.errors import ZzdError
    from org_tree.jurisdiction import SYSTEM

    async def go() -> dict[str, Any]:
        db = Database(_url())
        try:
            holder, grants = await _org(db)
            return {**(await grants.revoke(SYSTEM, grant_id)).to_dict(holder.index), "revoked": True}  # type: ignore[no-any-return]
        except ZzdError as exc:
            raise click.ClickException(exc.message) from exc
        finally:
            await db.dispose()

    click.echo(json.dumps(_run(go), ensure_ascii=False))


@admin.command("list")
def admin_list() -> None:
    """Every active grant, one JSON object a line."""
    from kernel.db.database import Database
    from org_tree.jurisdiction import SYSTEM

    async def go() -> list[dict[str, Any]]:
        db = Database(_url())
        try:
            holder, grants = await _org(db)
            return [g.to_dict(holder.index) for g in await grants.visible(SYSTEM)]
        finally:
            await db.dispose()

    for row in _run(go):
        click.echo(json.dumps(row, ensure_ascii=False))


def _audit_key(settings: Settings) -> bytes:
    """The audit key for ``zzd audit verify``/``prune``, never made here (a new key would check nothing):
    without one, exit 2 with what to set."""
    from zzd.config import ConfigError

    try:
        key = settings.existing_audit_secret()
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from exc
    if key is None:
        raise _NoAuditKey(
            f"no audit key: set ZZD_AUDIT_KEY or ZZD_AUDIT_KEY_FILE, or put the key in {settings.audit_key_path()} "
            "(where `zzd migrate` and `zzd serve` make one); without it the chain cannot be checked"
        )
    return key


class _NoAuditKey(click.ClickException):
    """Exit status 2, apart from 1 (a broken chain): nothing was checked."""

    exit_code = 2


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


def _kept(ctx: click.Context, param: click.Parameter, raw: str | None) -> tuple[int, str] | None:
    """``SEQ:HASH`` as an earlier verify printed them (``last_seq``, ``last_hash``)."""
    if raw is None:
        return None
    seq, _, digest = raw.partition(":")
    if not (seq.isdigit() and int(seq) >= 1 and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise click.BadParameter("give SEQ:HASH as a verify printed them: last_seq, a colon, last_hash (64 hex)")
    return int(seq), digest


@audit.command("verify")
@click.option("--no-seal", is_flag=True, help="Only read: do not chain committed entries first.")
@click.option(
    "--expect",
    callback=_kept,
    metavar="SEQ:HASH",
    help="A last_seq:last_hash an earlier verify printed, kept off the machine: the chain must still hold it.",
)
def audit_verify(no_seal: bool, expect: tuple[int, str] | None) -> None:
    """Seal what has committed, walk the keyed hash chain; exit 1 and name the first break if a row was edited,
    inserted or deleted. Entries not sealed yet are listed (``unsealed_ids``), not counted as a break.
    ``--expect`` also catches a cut tail (newest entries deleted, an earlier head put back).
    Needs the audit key (ZZD_AUDIT_KEY, ZZD_AUDIT_KEY_FILE or the generated zzd-audit.key): exit 2 without it."""
    from kernel.audit import AuditKeyMismatch, seal
    from kernel.audit_verify import verify
    from kernel.db.database import Database
    from zzd.cli import _settings

    settings = _settings()
    key = _audit_key(settings)

    async def go() -> dict[str, Any]:
        db = Database(settings.database_url)
        try:
            if not no_seal:
                with contextlib.suppress(AuditKeyMismatch):  # verify names it, without sealing anything
                    await seal(db, key, wait=True)
            return (await verify(db, key, expect=expect)).to_dict()
        finally:
            await db.dispose()

    report = _run(go)
    click.echo(json.dumps(report))
    if not report["ok"]:
        raise SystemExit(1)


@audit.command("query")
@click.option("--actor", default=None, help="The person who acted: login, or #id.")
@click.option("--unit", default=None, help="Unit code: entries in its subtree.")
@click.option("--since", default=None, help="ISO 8601 time with zone.")
@click.option("--until", default=None, help="ISO 8601 time with zone.")
@click.option("--action", default=None)
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
def audit_query(
    actor: str | None, unit: str | None, since: str | None, until: str | None, action: str | None, limit: int
) -> None:
    """Entries newest first, one JSON object a line."""
    from kernel.audit import AuditQuery, query
    from kernel.db.database import Database
    from kernel.errors import NotFound
    from org_tree.grants import unit_path_of

    def when(raw: str | None, option: str) -> datetime | None:
        if raw is None:
            return None
        try:
            at = datetime.fromisoformat(raw)
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            raise click.BadParameter("needs an ISO 8601 time with a zone, e.g. 2026-01-01T00:00:00+08:00",
                                     param_hint=option)  # fmt: skip
        return at

    start, end = when(since, "--since"), when(until, "--until")  # checked before the database is opened

    async def go() -> list[dict[str, Any]]:
        db = Database(_url())
        try:
            prefix = None
            if unit is not None:
                holder, _ = await _org(db)
                try:
                    prefix = unit_path_of(holder.index, holder.index.unit(unit))[1]
                except NotFound as exc:
                    raise click.ClickException(f"no unit {unit!r}") from exc
            who = await _person_id(db, actor) if actor else None
            out: list[dict[str, Any]] = []
            before = None
            while len(out) < limit:
                q = AuditQuery(who, prefix, start, end, action, before, min(500, limit - len(out)))
                items, before = await query(db, q)
                out.extend(items)
                if before is None:
                    break
            return out
        finally:
            await db.dispose()

    for row in _run(go):
        click.echo(json.dumps(row, ensure_ascii=False))


@audit.command("prune")
@click.option("--days", type=click.IntRange(183, None), default=None, help="Default: ZZD_AUDIT_RETENTION_DAYS.")
def audit_prune(days: int | None) -> None:
    """Delete entries older than the retention (at least six months); the chain's anchor moves with them."""
    from kernel.audit import AuditKeyMismatch, prune
    from kernel.db.database import Database
    from zzd.cli import _settings

    settings = _settings()
    keep = days or settings.audit_retention_days
    key = _audit_key(settings)

    async def go() -> int:
        db = Database(settings.database_url)
        now = datetime.now(UTC)
        try:
            return await prune(db, key, now - timedelta(days=keep), now)
        except AuditKeyMismatch as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            await db.dispose()

    click.echo(json.dumps({"deleted": _run(go), "kept_days": keep}))


@click.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--codes",
    "codes_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write login,code,expires_at for new persons (default: FILE.codes.csv; never overwritten).",
)
@click.option("--replace-holders", is_flag=True, help="Hand over a single position another person holds.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when on a terminal).")  # fmt: skip
def person_import(path: Path, codes_path: Path | None, replace_holders: bool, progress: bool | None) -> None:
    """Create or update persons and seat them, from a CSV (login,name,phone,positions); all or nothing."""
    from apps.registry import BOT_ROLE
    from kernel.clock import SystemClock
    from kernel.errors import BadRequest
    from org_tree.provisioning import apply_plan, plan_import
    from zzd.cli import _settings
    from zzd.cli_org import _Bars
    from zzd.services import Services

    settings = _settings()
    out = codes_path or path.with_suffix(".codes.csv")
    bars = _Bars(progress if progress is not None else os.isatty(2))
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path} is not UTF-8") from exc

    if out.exists():  # checked before anything is written; the file is then created exclusively
        raise click.ClickException(f"{out} exists; move it away or pass --codes")

    async def go() -> dict[str, Any]:
        # The server's services: a position handed over passes its unread notices on, as the API's handover.
        services = Services.build(settings)
        db = services.db
        try:
            index = await services.org_index.load()
            plan = plan_import(index, content, bars, reserved_roles=(BOT_ROLE,))
            if plan.problems:
                for p in plan.problems[:50]:
                    click.echo(f"{path}: {p}", err=True)
                raise click.ClickException(f"{len(plan.problems)} bad line(s); nothing was written")
            try:
                res = await apply_plan(db, SystemClock(), index, plan, replace_holders=replace_holders,
                                       code_days=settings.activation_code_days, progress=bars,
                                       hooks=services.org.hooks)  # fmt: skip
            except BadRequest as exc:
                for p in exc.data.get("problems", []):
                    click.echo(f"{path}: {p}", err=True)
                raise click.ClickException(exc.message) from exc
        finally:
            bars.close()
            await db.dispose()
        if res.codes:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["login", "code", "expires_at"])
                expires = res.expires_at.isoformat()
                w.writerows([login, code, expires] for login, code in res.codes)
        return {
            "created": res.created, "updated": res.updated, "unchanged": res.unchanged,
            "assigned": res.assigned, "handed_over": res.handed_over,
            "codes_file": str(out) if res.codes else None,
        }  # fmt: skip

    click.echo(json.dumps(_run(go), ensure_ascii=False))


@click.command("disable")
@click.option("--login", required=True, help="The person: login, or #id.")
@click.option("--enable", is_flag=True, help="Enable the account again (their ended sessions stay ended).")
def person_disable(login: str, enable: bool) -> None:
    """Disable LOGIN's account: no more sign-ins, every session ends (audited as person.disabled).

    Running servers close the person's sockets at their next safety poll (ZZD_SAFETY_POLL_INTERVAL);
    PATCH /api/v1/org/persons/{id} with {"disabled": true} closes them at once (docs/admin.md).
    """
    from kernel.db.database import Database
    from kernel.errors import ZzdError
    from org_tree.jurisdiction import SYSTEM

    async def go() -> dict[str, Any]:
        from kernel.clock import SystemClock
        from org_tree.holder import OrgIndexHolder
        from org_tree.org_service import OrgService

        db = Database(_url())
        try:
            holder = OrgIndexHolder(db)
            await holder.load()
            org = OrgService(db, SystemClock(), holder)
            return await org.change_person(SYSTEM, await _person_id(db, login), disabled=not enable)
        except ZzdError as exc:
            raise click.ClickException(exc.message) from exc
        finally:
            await db.dispose()

    click.echo(json.dumps(_run(go), ensure_ascii=False))


@click.command("code")
@click.option("--login", required=True)
def person_code(login: str) -> None:
    """Issue a new one-time activation code for LOGIN (a lost code, or an existing person without a password)."""
    from kernel.clock import SystemClock
    from kernel.db.database import Database
    from org_tree.people import PersonDirectory
    from zzd.cli import _settings

    settings = _settings()

    async def go() -> dict[str, Any]:
        db = Database(settings.database_url)
        try:
            directory = PersonDirectory(db, SystemClock())
            p = await directory.by_login(login)
            if p is None:
                raise click.ClickException(f"no person with login {login!r}")
            if p.disabled:  # activation would refuse the code
                raise click.ClickException(f"{login!r} is disabled (zzd person disable --login {login} --enable)")
            code, expires = await directory.issue_code(p.id, timedelta(days=settings.activation_code_days))
            return {"login": p.login, "code": code, "expires_at": expires.isoformat()}
        finally:
            await db.dispose()

    click.echo(json.dumps(_run(go), ensure_ascii=False))
