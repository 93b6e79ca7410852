"""``/api/v1/bot/subscriptions``: an app's event subscriptions and their delivery logs (docs/webhooks.md).

Who may call: an app with an app token, about its own subscriptions only
(another app's answer 404). Creating needs ``events:`` scopes covering every
event type asked for; a webhook URL must pass the address allowlist.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from kernel.hexids import UUID_PATTERN
from zzd.http.app_auth import current_app
from zzd.http.common import json_body
from zzd.http.contract import BodyModel, Endpoints, QueryModel, query, reply
from zzd.http.params import aware_time
from zzd.http.schemas.webhooks import (
    AttemptList,
    DeliveryList,
    Redelivering,
    SigningSecret,
    SubscriptionList,
    SubscriptionView,
)

__all__ = ["routes"]

api = Endpoints(tag="bot", prefix="/api/v1/bot/subscriptions")


class NewSubscription(BodyModel):
    mode: Literal["webhook", "stream"]
    event_types: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=64)]], Field(max_length=20)]
    #: ``report_category``: [keys], ``task_category``: [keys], ``unit``: a code or id inside the app's subtree.
    filters: dict[str, Any] = Field(default_factory=dict)
    #: For ``webhook``: where to post (http or https; checked against the address allowlist).
    url: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None


class PatchSubscription(BodyModel):
    status: Literal["active", "disabled"]


class RotateSigning(BodyModel):
    #: Seconds the old secret keeps signing alongside the new one (default one day).
    overlap_seconds: Annotated[int, Field(ge=0, le=30 * 86_400)] = 86_400


class Redeliver(BodyModel):
    #: The event's id (``event.id`` of the webhook body, a UUID; either case is read). Anything else is
    #: a 400 naming the field: it cannot be an event id, so "no delivery of that event" (404) misled.
    event_id: Annotated[str, StringConstraints(pattern=UUID_PATTERN)] | None = None
    #: ISO 8601 with a time zone: events created in [since, until).
    since: Annotated[str, StringConstraints(max_length=40)] | None = None
    until: Annotated[str, StringConstraints(max_length=40)] | None = None


class AttemptsQuery(QueryModel):
    before: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = Field(
        None, description="an attempt_id: only older attempts (next page: the last attempt_id of this one)"
    )
    limit: Annotated[int, Field(ge=1, le=500)] = 50


class DeliveriesQuery(QueryModel):
    state: Literal["pending", "delivered", "dead"] | None = None
    before: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = Field(
        None, description="a delivery_id: only older deliveries (next page: the last delivery_id of this one)"
    )
    limit: Annotated[int, Field(ge=1, le=500)] = 50


def _sid(request: Request) -> int:
    return int(request.path_params["subscription_id"])


@api.route("POST", "", {201: SubscriptionView}, body=NewSubscription, errors=(404, 409, 429))
async def create(request: Request) -> Response:
    """Subscribe; a webhook's signing secret (``whsec_…``) is in the answer this once."""
    s, p = await current_app(request)
    b = await json_body(request, NewSubscription)
    sub, secret = await s.subscriptions.create(p, mode=b.mode, event_types=b.event_types, filters=b.filters, url=b.url)
    return reply(SubscriptionView, {**sub.to_dict(), "secret": secret}, status=201)


@api.route("GET", "", {200: SubscriptionList}, errors=(429,))
async def list_subs(request: Request) -> Response:
    """The calling app's subscriptions, oldest first (no secrets)."""
    s, p = await current_app(request)
    return reply(SubscriptionList, {"subscriptions": [x.to_dict() for x in await s.subscriptions.list_for(p)]})


@api.route("GET", "/{subscription_id:int}", {200: SubscriptionView}, errors=(429,))
async def get_sub(request: Request) -> Response:
    """One of the calling app's subscriptions (another app's: 404), without its secret."""
    s, p = await current_app(request)
    return reply(SubscriptionView, (await s.subscriptions.get(p, _sid(request))).to_dict())


@api.route("PATCH", "/{subscription_id:int}", {200: SubscriptionView}, body=PatchSubscription, errors=(404, 409, 429))
async def patch_sub(request: Request) -> Response:
    """Disable, or enable again (failures reset; deliveries held meanwhile are sent)."""
    s, p = await current_app(request)
    b = await json_body(request, PatchSubscription)
    sub = await s.subscriptions.set_status(p, _sid(request), b.status)
    s.delivery.kick()
    return reply(SubscriptionView, sub.to_dict())


@api.route("POST", "/{subscription_id:int}/secret", {201: SigningSecret}, body=RotateSigning, errors=(429,))
async def rotate(request: Request) -> Response:
    """A new signing secret; both sign (two signatures) until the overlap ends."""
    s, p = await current_app(request)
    b = await json_body(request, RotateSigning)
    secret, until = await s.subscriptions.rotate_secret(p, _sid(request), timedelta(seconds=b.overlap_seconds))
    return reply(SigningSecret, {"secret": secret, "previous_secret_expires_at": until}, status=201)


@api.route("GET", "/{subscription_id:int}/attempts", {200: AttemptList}, query=AttemptsQuery, errors=(429,))
async def attempts(request: Request) -> Response:
    """The endpoint's delivery log, newest first: attempt, status, latency, response excerpt."""
    s, p = await current_app(request)
    q = query(request, AttemptsQuery)
    return reply(
        AttemptList, {"attempts": await s.subscriptions.attempts(p, _sid(request), before=q.before, limit=q.limit)}
    )


@api.route("GET", "/{subscription_id:int}/deliveries", {200: DeliveryList}, query=DeliveriesQuery, errors=(429,))
async def deliveries(request: Request) -> Response:
    """Deliveries of the subscription, newest first (``state``: pending, delivered, dead)."""
    s, p = await current_app(request)
    q = query(request, DeliveriesQuery)
    items = await s.subscriptions.deliveries(p, _sid(request), state=q.state, before=q.before, limit=q.limit)
    return reply(DeliveryList, {"deliveries": items})


@api.route("POST", "/{subscription_id:int}/redeliver", {200: Redelivering}, body=Redeliver, errors=(429,))
async def redeliver(request: Request) -> Response:
    """Send one event (``event_id``) or a time range (``since`` and ``until``, not both) again, same ``webhook-id``."""
    s, p = await current_app(request)
    b = await json_body(request, Redeliver)
    since, until = aware_time(b.since or None, "since"), aware_time(b.until or None, "until")
    n = await s.subscriptions.redeliver(p, _sid(request), event_id=b.event_id, since=since, until=until)
    s.delivery.kick()
    return reply(Redelivering, {"redelivering": n})


routes = api.routes
