"""Subscriptions: which events an app takes out, filtered, by webhook or by stream (docs/webhooks.md).

Why the app's scopes and subtree bound every subscription: a subscription may
only name event types its ``events:…`` scopes cover, and a delivery is only
ever made for an event inside the app's subtree, whatever the filters say.
Filters only narrow further (report category, task category, a unit subtree
inside the app's).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apps.model import EVENT_TYPES, AppPrincipal, event_scope_allows, parse_event_types
from apps.schema import app_deliveries, app_delivery_attempts, app_subscriptions
from apps.schema import apps as apps_table
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import for_update
from kernel.errors import BadRequest, Conflict, ErrorCode, Forbidden, NotFound
from kernel.hexids import lower_uuid
from messaging.tasks.categories import list_categories
from org_tree.index import OrgIndex
from org_tree.selectors import unit_value

__all__ = ["FILTER_KEYS", "Subscription", "SubscriptionService", "new_whsec"]

FILTER_KEYS = ("report_category", "task_category", "unit")
MODES = ("webhook", "stream")


def new_whsec() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    app_id: int
    event_types: tuple[str, ...]
    filters: dict[str, Any]
    mode: str
    url: str | None
    secret: str | None
    previous_secret: str | None
    previous_expires_at: datetime | None
    status: str
    disabled_reason: str | None
    consecutive_failures: int

    @classmethod
    def from_row(cls, r: Any) -> Subscription:
        return cls(
            int(r.id), int(r.app_id), tuple(t for t in str(r.event_types).split(",") if t), json.loads(r.filters),
            str(r.mode), r.url, r.secret, r.previous_secret, r.previous_expires_at, str(r.status),
            r.disabled_reason, int(r.consecutive_failures),
        )  # fmt: skip

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets to sign with now: the current one, and the previous during a rotation."""
        out = [self.secret] if self.secret else []
        if self.previous_secret and self.previous_expires_at is not None and self.previous_expires_at > now:
            out.append(self.previous_secret)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "app_id": self.app_id, "event_types": list(self.event_types), "filters": self.filters,
            "mode": self.mode, "url": self.url, "status": self.status, "disabled_reason": self.disabled_reason,
            "consecutive_failures": self.consecutive_failures,
            "previous_secret_expires_at": _iso(self.previous_expires_at),
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class SubscriptionService:
    """An app's subscriptions and their delivery logs; the parts it uses, and no state of its own."""

    db: Database
    clock: Clock
    #: The current org index.
    index: Callable[[], OrgIndex]
    #: Raises ``BadRequest``/``Forbidden`` for a webhook target the address policy refuses.
    check_url: Callable[[str], Awaitable[None]]
    #: Active subscriptions one app may hold (``ZZD_APP_MAX_SUBSCRIPTIONS``).
    max_active: int = 100

    async def _room_for_one_more(self, conn: AsyncConnection, app_id: int) -> None:
        """Refuse a subscription (new or re-enabled) that would take the app past ``max_active``.

        Why a cap: every active subscription is one more delivery per matching event, so an app
        creating them in a loop (nothing stops it otherwise: there is no DELETE, and 600 a minute
        pass the rate limit) multiplies the delivery work every other app and the chat share.
        Disabled ones do not count: they cost nothing until enabled. The app's row is locked
        first, so two concurrent creates cannot both take the last place.
        """
        await conn.execute(for_update(conn, select(apps_table.c.id).where(apps_table.c.id == app_id)))
        active = (
            await conn.execute(
                select(func.count())
                .select_from(app_subscriptions)
                .where(app_subscriptions.c.app_id == app_id, app_subscriptions.c.status == "active")
            )
        ).scalar_one()
        if int(active) >= self.max_active:
            raise Conflict(
                f"an app has at most {self.max_active} active subscriptions: disable one first",
                data={"limit": self.max_active, "active": int(active)},
            )

    async def _filters(self, p: AppPrincipal, types: tuple[str, ...], raw: dict[str, Any]) -> dict[str, Any]:
        """The filters checked and normalised; a filter that could never let an event through is refused.

        Why refuse rather than store: a category key with a typo, or a ``task_category`` on a
        subscription that takes no ``task.*`` event, would be kept and silently match nothing
        (or, for the second, nothing it was meant to narrow), and the app would wait for events
        that never come.
        """
        unknown = sorted(set(raw) - set(FILTER_KEYS))
        if unknown:
            raise BadRequest(
                f"unknown filter(s); known: {', '.join(FILTER_KEYS)}", data={"field": "filters", "unknown": unknown}
            )
        concrete = {t for pattern in types for t in _concrete(pattern)}
        out: dict[str, Any] = {}
        for key, applies in (("report_category", "report.filed"), ("task_category", "task.")):
            if key in raw:
                vals = raw[key]
                if (
                    not isinstance(vals, list)
                    or not vals
                    or not all(isinstance(v, str) and 0 < len(v) <= 32 for v in vals)
                ):
                    raise BadRequest(f"{key} must be a non-empty list of category keys", data={"field": key})
                if not any(t.startswith(applies) for t in concrete):
                    raise BadRequest(
                        f"{key} applies to {applies}{'*' if applies.endswith('.') else ''} events, "
                        "which this subscription does not take",
                        data={"field": key, "event_types": list(types)},
                    )
                out[key] = sorted(set(vals))
        wanted = sorted({*out.get("report_category", ()), *out.get("task_category", ())})
        if wanted:
            async with self.db.read() as conn:
                known = {c.key for c in await list_categories(conn)}
            missing = [k for k in wanted if k not in known]
            if missing:
                raise BadRequest(
                    f"unknown category {missing[0]!r} (GET /api/v1/tasks/categories lists them)",
                    code=ErrorCode.UNKNOWN_CATEGORY,
                    data={"field": "filters", "unknown": missing},
                )
        if "unit" in raw:
            idx: OrgIndex = self.index()
            ref = unit_value(raw["unit"])  # the forms every unit field takes (docs/selectors.md)
            u = idx.unit(ref)
            if not idx.contains(idx.unit(p.app.subtree_unit_id), u):
                raise Forbidden(
                    "the unit filter lies outside the app's subtree", code=ErrorCode.OUT_OF_SCOPE, data={"unit": ref}
                )
            out["unit"] = idx.unit_id(u)
        return out

    async def create(
        self, p: AppPrincipal, *, mode: str, event_types: Iterable[str], filters: dict[str, Any], url: str | None
    ) -> tuple[Subscription, str | None]:
        """A subscription; for webhooks also its signing secret (shown this once)."""
        types = parse_event_types(event_types)
        outside = [t for t in types if not all(event_scope_allows(p.app.scopes, x) for x in _concrete(t))]
        if outside:
            raise Forbidden(
                "the app's scopes do not cover these event types",
                code=ErrorCode.INSUFFICIENT_SCOPE,
                data={"scope": f"events:{outside[0]}", "event_types": outside},
            )
        if mode not in MODES:
            raise BadRequest("mode must be webhook or stream", data={"field": "mode"})
        clean = await self._filters(p, types, filters)
        secret: str | None = None
        if mode == "webhook":
            if not url:
                raise BadRequest("a webhook subscription needs a url", data={"field": "url"})
            _url_form(url)
            await self.check_url(url)
            secret = new_whsec()
        elif url:
            raise BadRequest("a stream subscription takes no url", data={"field": "url"})
        now = self.clock.now()
        async with self.db.write() as conn:
            await self._room_for_one_more(conn, p.app_id)
            res = await conn.execute(
                insert(app_subscriptions)
                .values(
                    app_id=p.app_id,
                    event_types=",".join(types),
                    filters=json.dumps(clean),
                    mode=mode,
                    url=url,
                    secret=secret,
                    status="active",
                    consecutive_failures=0,
                    created_at=now,
                )  # fmt: skip
                .returning(app_subscriptions.c.id)
            )
            sid = int(res.scalar_one())
            row = (await conn.execute(select(app_subscriptions).where(app_subscriptions.c.id == sid))).one()
        return Subscription.from_row(row), secret

    async def get(self, p: AppPrincipal, sub_id: int) -> Subscription:
        """One of the calling app's subscriptions (another app's: 404)."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(app_subscriptions).where(app_subscriptions.c.id == sub_id))).first()
        if row is None or int(row.app_id) != p.app_id:
            raise NotFound("no such subscription", data={"subscription_id": sub_id})
        return Subscription.from_row(row)

    async def list_for(self, p: AppPrincipal) -> list[Subscription]:
        async with self.db.read() as conn:
            q = select(app_subscriptions).where(app_subscriptions.c.app_id == p.app_id).order_by(app_subscriptions.c.id)
            return [Subscription.from_row(r) for r in await conn.execute(q)]

    async def set_status(self, p: AppPrincipal, sub_id: int, status: str) -> Subscription:
        """``active`` (re-enable: failures reset, pending deliveries resume) or ``disabled``."""
        current = await self.get(p, sub_id)
        if status not in ("active", "disabled"):
            raise BadRequest("status must be active or disabled", data={"field": "status"})
        values: dict[str, Any] = {"status": status, "disabled_reason": None if status == "active" else "by the app"}
        if status == "active":
            values["consecutive_failures"] = 0
        async with self.db.write() as conn:
            if status == "active" and current.status != "active":
                await self._room_for_one_more(conn, p.app_id)
            await conn.execute(update(app_subscriptions).where(app_subscriptions.c.id == sub_id).values(**values))
        return await self.get(p, sub_id)

    async def rotate_secret(self, p: AppPrincipal, sub_id: int, overlap: timedelta) -> tuple[str, datetime]:
        """A new signing secret; the old one also signs (a second signature) until the overlap ends."""
        sub = await self.get(p, sub_id)
        if sub.mode != "webhook":
            raise BadRequest("only webhook subscriptions have a signing secret", data={"field": "mode"})
        now = self.clock.now()
        secret, until = new_whsec(), now + overlap
        async with self.db.write() as conn:
            await conn.execute(
                update(app_subscriptions)
                .where(app_subscriptions.c.id == sub_id)
                .values(secret=secret, previous_secret=sub.secret, previous_expires_at=until)
            )
        return secret, until

    async def attempts(self, p: AppPrincipal, sub_id: int, *, before: int | None, limit: int) -> list[dict[str, Any]]:
        """The delivery log of one endpoint, newest first."""
        await self.get(p, sub_id)
        a, d = app_delivery_attempts, app_deliveries
        q = (
            select(a, d.c.event_id, d.c.event_type, d.c.state)
            .join(d, d.c.id == a.c.delivery_id)
            .where(a.c.subscription_id == sub_id)
            .order_by(a.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            q = q.where(a.c.id < before)
        async with self.db.read() as conn:
            rows = list(await conn.execute(q))
        return [
            {
                "attempt_id": int(r.id),
                "delivery_id": int(r.delivery_id),
                "event_id": r.event_id,
                "event_type": r.event_type,
                "attempt": int(r.attempt),
                "at": _iso(r.at),
                "status": r.status,
                "latency_ms": int(r.latency_ms),
                "error": r.error,
                "response_excerpt": r.response_excerpt,
                "delivery_state": r.state,
            }  # fmt: skip
            for r in rows
        ]

    async def deliveries(
        self, p: AppPrincipal, sub_id: int, *, state: str | None, before: int | None = None, limit: int
    ) -> list[dict[str, Any]]:
        """Deliveries of one subscription, newest first; ``before`` (a delivery id) pages back."""
        await self.get(p, sub_id)
        d = app_deliveries
        q = select(d).where(d.c.subscription_id == sub_id).order_by(d.c.id.desc()).limit(limit)
        if state is not None:
            q = q.where(d.c.state == state)
        if before is not None:
            q = q.where(d.c.id < before)
        async with self.db.read() as conn:
            rows = list(await conn.execute(q))
        return [
            {
                "delivery_id": int(r.id),
                "event_id": r.event_id,
                "event_type": r.event_type,
                "state": r.state,
                "attempts": int(r.attempts),
                # only a pending delivery has a next attempt (a dead or delivered one kept its last due time)
                "next_attempt_at": _iso(r.next_attempt_at) if r.state == "pending" else None,
                "delivered_at": _iso(r.delivered_at),
                "event_created_at": _iso(r.event_created_at),
            }  # fmt: skip
            for r in rows
        ]

    async def redeliver(
        self,
        p: AppPrincipal,
        sub_id: int,
        *,
        event_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Send one event, or every event of a time range, again (same ``webhook-id``); returns how many."""
        await self.get(p, sub_id)
        d = app_deliveries
        if event_id is not None and (since is not None or until is not None):
            fields = ["event_id", "since", "until"]
            raise BadRequest("give event_id, or since and until, not both", data={"fields": fields})
        if event_id is not None:
            event_id = lower_uuid(event_id)  # a UUID is read in either case (kernel.hexids); stored lower-case
            cond = d.c.event_id == event_id
        elif since is not None and until is not None:
            if until <= since or until - since > timedelta(days=31):
                raise BadRequest("since must be before until, at most 31 days apart", data={"field": "until"})
            cond = and_(d.c.event_created_at >= since, d.c.event_created_at < until)
        else:
            raise BadRequest("give event_id, or since and until", data={"fields": ["event_id", "since", "until"]})
        now = self.clock.now()
        async with self.db.write() as conn:
            res = await conn.execute(
                update(d)
                .where(d.c.subscription_id == sub_id, cond)
                .values(state="pending", attempts=0, next_attempt_at=now, leased_until=None, leased_by=None)
            )
        count = int(res.rowcount)
        if event_id is not None and count == 0:
            raise NotFound("no delivery of that event to this subscription", data={"event_id": event_id})
        return count


def _url_form(url: str) -> None:
    """Refuse what a webhook URL would carry that is never sent as written: a space or control
    character (to be percent-encoded), a fragment (``#…`` never leaves the sender), port 0.

    Checked when a subscription is made (the address check before each attempt is separate), so
    the URL stored is the one requested."""
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise BadRequest("url must not contain spaces or control characters (percent-encode them)",
                         data={"field": "url"})  # fmt: skip
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an IPv4 address or an unclosed "[" in brackets
        raise BadRequest("url is not a valid URL", data={"field": "url"}) from exc
    if "#" in url:
        raise BadRequest("url must not carry a fragment (#…): it is never sent", data={"field": "url"})
    try:
        port = parts.port
    except ValueError:
        return  # the address check names it
    if port == 0:
        raise BadRequest("url's port must be 1-65535", data={"field": "url"})


def _concrete(pattern: str) -> list[str]:
    return [t for t in EVENT_TYPES if fnmatch.fnmatchcase(t, pattern)]
