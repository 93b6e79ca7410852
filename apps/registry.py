"""The app registry: administrators create apps, hand out and rotate secrets, and revoke them.

Who may: a person holding ``Perm.APPS`` over the app's owning unit (and, when
creating or re-scoping, over the subtree the app may address), checked by
``OrgService.authorize`` so every refusal is audited; every change is written
to the audit log in its own transaction. An app outside the caller's grants
answers 404, exactly as an unknown id, so ids tell nothing.

Each app acts through a **bot identity**: a person (no password, no login)
holding a position of role ``app_bot`` in the root unit of its subtree. The
notice, task and conversation paths then treat the app like any sender, and
its jurisdiction is exactly that subtree (the role's rule is ``subtree``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apps.model import App, AppPrincipal, event_scope_allows, parse_scopes
from apps.schema import app_secrets, apps
from kernel.audit import AuditEntry, record
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.errors import BadRequest, Conflict, ErrorCode, Forbidden, NotFound, Unauthorized
from kernel.text import check_text
from kernel.wire import iso
from org_tree.grants import Perm, holds_grant, unit_path_of
from org_tree.index import OrgIndex
from org_tree.jurisdiction import SYSTEM, Actor, outside_subtrees
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from org_tree.resolution import evaluate
from org_tree.selectors import parse_selector, to_text

logger = logging.getLogger(__name__)

#: What a client id can be: ``zzdapp_`` and hex (``create``); visible ASCII is as loose as any could be.
_CLIENT_ID = re.compile(r"[\x21-\x7e]{1,64}")

__all__ = ["BOT_ROLE", "AppRegistry", "NewApp", "NewSecret"]


def _shown(app: App, field: str) -> Any:
    """One field of ``app`` as an audit entry records it (scopes as a sorted list)."""
    value = getattr(app, field)
    return sorted(value) if field == "scopes" else value


BOT_ROLE = "app_bot"
_BOT_ROLE_SPEC = {
    "key": BOT_ROLE,
    "name": "应用机器人",
    "levels": ["province", "city", "county", "township", "village", "grid"],
    "jurisdiction": "subtree",
    "auto": False,
}


def _covered(granted: frozenset[str], scope: str) -> bool:
    """``scope`` gives nothing ``granted`` does not: granted already, or an event type its family covers."""
    if scope in granted:
        return True
    return scope.startswith("events:") and not scope.endswith(".*") and event_scope_allows(granted, scope[7:])


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewApp:
    """What an administrator asks for (validated by :meth:`AppRegistry.create`)."""

    name: str
    owning_unit: int | str
    subtree: int | str
    visibility: Any
    scopes: Iterable[str]
    owner_position_id: int | None = None
    rate_per_minute: int = 600


@dataclass(frozen=True, slots=True)
class NewSecret:
    """A freshly made secret: the only time its text exists outside the caller."""

    id: int
    secret: str
    created_at: datetime
    #: When the secrets it replaced stop working (rotation), else None.
    previous_expire_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        exp = self.previous_expire_at
        return {
            "secret_id": self.id,
            "client_secret": self.secret,
            "previous_secrets_expire_at": iso(exp),
        }


@dataclass(frozen=True, slots=True)
class AppRegistry:
    """Apps and their credentials (docs/apps.md); the parts it uses, and no state of its own."""

    db: Database
    clock: Clock
    org: OrgService
    persons: PersonDirectory
    index: Callable[[], OrgIndex]

    def __post_init__(self) -> None:
        # The bot position is the app: only the app's creation seats its bot there (docs/apps.md).
        self.org.reserve_role(BOT_ROLE)

    # ------------------------------------------------------------ administration
    async def create(self, actor: Actor, spec: NewApp) -> tuple[App, NewSecret]:
        """Register an app with its bot identity and first secret (shown once)."""
        idx = self.index()
        owning, subtree = idx.unit(spec.owning_unit), idx.unit(spec.subtree)
        await self.org.authorize(actor, Perm.APPS, owning, "app.create", name=spec.name)
        await self.org.authorize(actor, Perm.APPS, subtree, "app.create", name=spec.name)
        name = check_text(spec.name, field="name", max_chars=100).strip()
        scopes = parse_scopes(spec.scopes)
        visibility = await self._audited_visibility(actor, idx, spec.visibility, (owning, subtree), "app.create",
                                                    name=spec.name)  # fmt: skip
        if spec.owner_position_id is not None:
            k = idx.slot(spec.owner_position_id)
            if not idx.contains(owning, idx.position_unit(k)):
                field = {"field": "owner_position_id"}
                raise BadRequest("owner_position_id must be in the owning unit's subtree", data=field)
        if not 1 <= spec.rate_per_minute <= 100_000:
            raise BadRequest("rate_per_minute must be 1..100000", data={"field": "rate_per_minute"})
        async with self.db.read() as conn:
            if (await conn.execute(select(apps.c.id).where(apps.c.name == name))).first() is not None:
                raise Conflict("an app with that name exists", code=ErrorCode.ALREADY_EXISTS, data={"name": name})
        bot_person, bot_position = await self._bot_identity(actor, name, idx.unit_id(subtree))
        now = self.clock.now()
        secret = "zzdsec_" + secrets.token_urlsafe(32)
        async with self.db.write() as conn:
            res = await conn.execute(
                insert(apps)
                .values(
                    name=name,
                    client_id="zzdapp_" + secrets.token_hex(10),
                    owning_unit_id=idx.unit_id(owning),
                    owner_position_id=spec.owner_position_id,
                    subtree_unit_id=idx.unit_id(subtree),
                    visibility=visibility,
                    scopes=",".join(sorted(scopes)),
                    rate_per_minute=spec.rate_per_minute,
                    bot_person_id=bot_person,
                    bot_position_id=bot_position,
                    disabled=False,
                    created_by=actor.person_id or None,
                    created_at=now,
                    updated_at=now,
                )  # fmt: skip
                .returning(apps.c.id)
            )
            app_id = int(res.scalar_one())
            sid = await self._insert_secret(conn, app_id, secret, now)
            app = await self._load(conn, app_id)
            await record(conn, self._entry(actor, "app.created", app, scopes=sorted(scopes), secret_id=sid), now)
        return app, NewSecret(sid, secret, now)

    def _visibility(self, idx: OrgIndex, raw: Any, bounds: tuple[int, int]) -> str:
        """The 可见范围 in its text form, refused (403 ``out_of_scope``) where it reaches past ``bounds``.

        Why bounded: the administrator was checked over the owning unit and the app's
        subtree only; a county's administrator must not put an app in the workbench of
        every grid worker in the province.
        """
        sel = parse_selector(raw)
        ranges = evaluate(idx, sel)  # unknown units or roles answer 404 now, not when someone opens the workbench
        count, sample = outside_subtrees(idx, ranges, bounds)
        if count:
            raise Forbidden(
                f"the visibility reaches {count} position(s) outside the app's owning unit and subtree",
                code=ErrorCode.OUT_OF_SCOPE,
                data={"field": "visibility", "count": count, "positions": sample},
            )
        return to_text(sel)

    async def _audited_visibility(
        self, actor: Actor, idx: OrgIndex, raw: Any, bounds: tuple[int, int], action: str, **detail: Any
    ) -> str:
        """:meth:`_visibility`, its refusal on record (``admin.denied``) before the 403, as every refusal of an
        app administrator's is (docs/apps.md): a 可见范围 reaching the whole city went unrecorded (江西 audit)."""
        try:
            return self._visibility(idx, raw, bounds)
        except Forbidden as exc:
            count = (exc.data or {}).get("count")
            await self.org.deny(actor, Perm.APPS, bounds[0], action, field="visibility", count=count, **detail)
            raise

    async def _bot_identity(self, actor: Actor, name: str, unit_id: int) -> tuple[int, int]:
        """A person and an ``app_bot`` position in ``unit_id``, made with the operator's rights (SYSTEM).

        The app administrator needs neither ``roles`` nor ``org`` for this, but the audit entries of the
        role, the position and its seat name them (``actor.person_id``): with SYSTEM's null actor they read
        as the command-line operator's work (docs/admin.md), and nothing said who made the bot's seat.
        """
        idx = self.index()
        on_behalf = Actor(actor.person_id, (), SYSTEM.grants)
        if BOT_ROLE not in idx.role_by_name:
            try:
                await self.org.create_role(on_behalf, dict(_BOT_ROLE_SPEC))
            except Conflict:
                pass  # another process made it first
        person = await self.persons.create(name)
        pos = await self.org.create_position(on_behalf, unit_id, BOT_ROLE, title=name)
        await self.org.handover(on_behalf, pos.id, person.id, seat_reserved=True)
        return person.id, pos.id

    async def _insert_secret(self, conn: AsyncConnection, app_id: int, secret: str, now: datetime) -> int:
        res = await conn.execute(
            insert(app_secrets)
            .values(app_id=app_id, secret_hash=_hash(secret), hint=secret[:11], created_at=now)
            .returning(app_secrets.c.id)
        )
        return int(res.scalar_one())

    async def _load(self, conn: AsyncConnection, app_id: int) -> App:
        row = (await conn.execute(select(apps).where(apps.c.id == app_id))).first()
        if row is None:
            raise NotFound("no such app", data={"app_id": app_id})
        return App.from_row(row)

    def _entry(self, actor: Actor, action: str, app: App, **detail: Any) -> AuditEntry:
        idx = self.index()
        try:
            unit_id, path = unit_path_of(idx, idx.unit(app.owning_unit_id))
        except NotFound:
            unit_id, path = app.owning_unit_id, None
        return AuditEntry(action, actor.person_id or None, None, "ok", unit_id, path, {"app_id": app.id, **detail})

    def _covers(self, actor: Actor, app: App) -> bool:
        idx = self.index()
        try:
            u = idx.unit(app.owning_unit_id)
        except NotFound:
            return holds_grant(idx, actor, Perm.APPS, None)
        return holds_grant(idx, actor, Perm.APPS, u)

    async def get(self, actor: Actor, app_id: int, action: str = "app.read") -> App:
        """The app, if ``actor`` administers it; otherwise 404 as for an unknown id.

        Another unit's app is refused like any administrative attempt: ``admin.denied`` (``attempted``:
        ``action``) is written first, since docs/admin.md puts every refusal on record and these were not.
        """
        async with self.db.read() as conn:
            try:
                app = await self._load(conn, app_id)
            except NotFound:
                app = None
        if app is not None and not self._covers(actor, app):
            idx = self.index()
            try:
                u: int | None = idx.unit(app.owning_unit_id)
            except NotFound:
                u = None
            await self.org.deny(actor, Perm.APPS, u, action, app_id=app_id)
            app = None
        if app is None:
            raise NotFound("no such app", data={"app_id": app_id})
        return app

    async def list_apps(self, actor: Actor) -> list[App]:
        """Apps whose owning unit lies in one of the caller's ``apps`` grants."""
        async with self.db.read() as conn:
            rows = await conn.execute(select(apps).order_by(apps.c.id))
            found = [App.from_row(r) for r in rows]
        return [a for a in found if self._covers(actor, a)]

    async def update(
        self,
        actor: Actor,
        app_id: int,
        *,
        scopes: Iterable[str] | None = None,
        visibility: Any = None,
        disabled: bool | None = None,
        rate_per_minute: int | None = None,
    ) -> App:
        """Change scopes, visibility, the rate limit or the disabled flag (effective on the next request).

        The owning unit's administrators manage the app, but an app may work over a larger subtree than
        the unit that owns it (made by someone with ``apps`` over both). Adding a scope, or a 可见范围
        reaching past the owning unit, gives it more over that subtree: that needs ``apps`` over the
        subtree too, as creating it did, or a township's administrator could make a county-wide app send
        what they themselves could not. Narrowing, disabling and the rest stay the owning unit's.
        """
        app = await self.get(actor, app_id, "app.updated")
        idx = self.index()
        values: dict[str, Any] = {}

        async def over_subtree(field: str) -> int:
            subtree = idx.unit(app.subtree_unit_id)
            await self.org.authorize(actor, Perm.APPS, subtree, "app.updated", app_id=app.id, field=field)
            return subtree

        if scopes is not None:
            wanted = parse_scopes(scopes)
            if any(not _covered(app.scopes, sc) for sc in wanted):
                await over_subtree("scopes")
            values["scopes"] = ",".join(sorted(wanted))
        if visibility is not None:
            owning = idx.unit(app.owning_unit_id)
            try:
                values["visibility"] = self._visibility(idx, visibility, (owning, owning))
            except Forbidden:
                bounds = (owning, await over_subtree("visibility"))
                values["visibility"] = await self._audited_visibility(
                    actor, idx, visibility, bounds, "app.updated", app_id=app.id
                )
        if disabled is not None:
            values["disabled"] = disabled
        if rate_per_minute is not None:
            if not 1 <= rate_per_minute <= 100_000:
                raise BadRequest("rate_per_minute must be 1..100000", data={"field": "rate_per_minute"})
            values["rate_per_minute"] = rate_per_minute
        if not values:
            raise BadRequest(
                "nothing to change", data={"fields": ["scopes", "visibility", "disabled", "rate_per_minute"]}
            )
        now = self.clock.now()
        async with self.db.write() as conn:
            await conn.execute(update(apps).where(apps.c.id == app_id).values(updated_at=now, **values))
            after = await self._load(conn, app_id)
            # What each changed field was and became: "changed": ["scopes"] alone did not tell an auditor
            # which scope an app was given, or how far its 可见范围 was widened (江西 audit).
            was = {f: _shown(app, f) for f in sorted(values)}
            now_is = {f: _shown(after, f) for f in sorted(values)}
            entry = self._entry(actor, "app.updated", app, changed=sorted(values), before=was, after=now_is)
            await record(conn, entry, now)
        return after

    async def rotate_secret(self, actor: Actor, app_id: int, overlap: timedelta) -> NewSecret:
        """A new secret; the current ones keep working for ``overlap`` (0: stop at once)."""
        await self.get(actor, app_id, "app.secret_rotated")
        if not timedelta(0) <= overlap <= timedelta(days=30):
            raise BadRequest("overlap_seconds must be 0..2592000", data={"field": "overlap_seconds"})
        now = self.clock.now()
        until = now + overlap
        secret = "zzdsec_" + secrets.token_urlsafe(32)
        s = app_secrets
        async with self.db.write() as conn:
            live = (s.c.app_id == app_id) & s.c.revoked_at.is_(None)
            await conn.execute(update(s).where(live & (s.c.expires_at.is_(None) | (s.c.expires_at > until))).values(
                expires_at=until))  # fmt: skip
            sid = await self._insert_secret(conn, app_id, secret, now)
            app = await self._load(conn, app_id)
            # Seconds, as the request's overlap_seconds: str(timedelta) read "0:00:00" or "1 day, 0:00:00" (江西 audit).
            entry = self._entry(
                actor, "app.secret_rotated", app, secret_id=sid, overlap_seconds=int(overlap.total_seconds())
            )
            await record(conn, entry, now)
        return NewSecret(sid, secret, now, until)

    async def revoke_secret(self, actor: Actor, app_id: int, secret_id: int) -> dict[str, Any]:
        """Revoke one secret now: its tokens are refused on the next request."""
        await self.get(actor, app_id, "app.secret_revoked")
        now = self.clock.now()
        s = app_secrets
        async with self.db.write() as conn:
            res = await conn.execute(
                update(s).where(s.c.id == secret_id, s.c.app_id == app_id, s.c.revoked_at.is_(None)).values(
                    revoked_at=now)
            )  # fmt: skip
            if res.rowcount == 0:
                raise NotFound("no such live secret", data={"secret_id": secret_id})
            app = await self._load(conn, app_id)
            await record(conn, self._entry(actor, "app.secret_revoked", app, secret_id=secret_id), now)
        return {"secret_id": secret_id, "revoked": True}

    async def secrets(self, actor: Actor, app_id: int) -> list[dict[str, Any]]:
        """The app's secrets as hints and dates (never the secrets)."""
        await self.get(actor, app_id)
        now = self.clock.now()
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(app_secrets).where(app_secrets.c.app_id == app_id).order_by(app_secrets.c.id)
            )
            out = []
            for r in rows:
                exp, rev = r.expires_at, r.revoked_at
                out.append({
                    "secret_id": int(r.id), "hint": r.hint + "…", "created_at": iso(r.created_at),
                    "expires_at": iso(exp), "revoked_at": iso(rev),
                    "active": rev is None and (exp is None or exp > now),
                })  # fmt: skip
        return out

    async def workbench(self, actor: Actor) -> list[dict[str, Any]]:
        """Enabled apps whose visibility selector (可见范围) reaches one of the caller's positions."""
        idx = self.index()
        mine = [k for k in (idx.find_slot(p) for p in actor.position_ids) if k >= 0]
        async with self.db.read() as conn:
            rows = list(await conn.execute(select(apps).where(apps.c.disabled.is_(False)).order_by(apps.c.id)))
        out = []
        for r in rows:
            try:
                ranges = evaluate(idx, parse_selector(str(r.visibility)))
                bounds = (idx.unit(int(r.owning_unit_id)), idx.unit(int(r.subtree_unit_id)))
            except (NotFound, BadRequest):
                continue  # the selector names a unit or role that is gone: visible to nobody
            # Only within the units its administrators were checked over (a 可见范围 stored before
            # that was enforced, or made wider by a unit moved since, reaches no further).
            inside = [k for k in mine if any(idx.contains(b, idx.position_unit(k)) for b in bounds)]
            if any(lo <= k < hi for k in inside for lo, hi in ranges):
                out.append({"id": int(r.id), "name": str(r.name), "owning_unit_id": int(r.owning_unit_id)})
        return out

    # ------------------------------------------------------------- app side
    async def authenticate_client(self, client_id: str, secret: str) -> tuple[App, int]:
        """The app and secret id for a client id + secret pair; 401 ``invalid_client`` for anything else."""
        bad = partial(Unauthorized, "unknown client or wrong secret", code=ErrorCode.INVALID_CLIENT)
        if not _CLIENT_ID.fullmatch(client_id):
            # No client has such an id, and PostgreSQL refuses a NUL in a text parameter outright: a
            # client_id "a\u0000b" (JSON, form or Basic) answered 500 there, to anyone (江西 audit).
            raise bad()
        now = self.clock.now()
        async with self.db.read() as conn:
            row = (await conn.execute(select(apps).where(apps.c.client_id == client_id))).first()
            if row is None:
                raise bad()
            app = App.from_row(row)
            candidates = await conn.execute(
                select(app_secrets).where(app_secrets.c.app_id == app.id, app_secrets.c.revoked_at.is_(None))
            )
            digest = _hash(secret)
            for c in candidates:
                live = c.expires_at is None or c.expires_at > now
                if live and hmac.compare_digest(str(c.secret_hash), digest):
                    if app.disabled:
                        raise Unauthorized("the app is disabled", code=ErrorCode.INVALID_CLIENT)
                    return app, int(c.id)
        raise bad()

    async def principal(self, app_id: int, secret_id: int) -> AppPrincipal:
        """The app behind a verified token, refused once its secret is revoked or expired or the app disabled."""
        now = self.clock.now()
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(apps, app_secrets.c.expires_at, app_secrets.c.revoked_at)
                    .join(app_secrets, app_secrets.c.app_id == apps.c.id)
                    .where(apps.c.id == app_id, app_secrets.c.id == secret_id)
                )
            ).first()
        if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
            raise Unauthorized("the app's credentials were revoked or rotated out", code=ErrorCode.INVALID_CLIENT)
        app = App.from_row(row)
        if app.disabled:
            raise Unauthorized("the app is disabled", code=ErrorCode.INVALID_CLIENT)
        return AppPrincipal(app, secret_id)
