"""Tables of the open platform: apps, their secrets, idempotency keys, subscriptions and deliveries.

Why one module: these tables change together (migration ``0009_apps``), and
each is small. Secrets are stored as SHA-256 digests (a 256-bit random secret
cannot be guessed, so a slow hash buys nothing); webhook signing secrets are
stored as they are, because the server signs with them.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint, text

from kernel.db.base import UTCDateTime, metadata
from kernel.db.types import ID

__all__ = ["app_deliveries", "app_delivery_attempts", "app_idempotency", "app_secrets", "app_subscriptions", "apps"]

apps = Table(
    "apps",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    # Public half of the credentials (OAuth2 client id), e.g. ``zzdapp_3f9c…``.
    Column("client_id", String(40), nullable=False, unique=True),
    # The unit whose administrators (Perm.APPS over it) manage the app.
    Column("owning_unit_id", ID, nullable=False),
    # The position told when an endpoint is disabled (NULL: the app's bot position's unit head is not guessed).
    Column("owner_position_id", ID, nullable=True),
    # The root of the subtree the app may address (notices, tasks, reads).
    Column("subtree_unit_id", ID, nullable=False),
    # Selector text (docs/selectors.md) of the positions that see the app in their workbench (可见范围).
    Column("visibility", Text, nullable=False),
    # Sorted, comma-separated scopes (apps/model.py).
    Column("scopes", Text, nullable=False),
    # Requests per minute across every server process.
    Column("rate_per_minute", Integer, nullable=False),
    # The app acts as this person holding this position (role ``app_bot``, in the subtree's root unit).
    Column("bot_person_id", ID, ForeignKey("persons.id"), nullable=False),
    Column("bot_position_id", ID, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_by", ID, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

app_secrets = Table(
    "app_secrets",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("app_id", ID, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    # hex SHA-256 of the secret; the secret itself is shown once.
    Column("secret_hash", String(64), nullable=False, unique=True),
    # First characters, so an administrator can tell secrets apart.
    Column("hint", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Set on rotation: the old secret keeps working until then (the overlap).
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index("ix_app_secrets_app", "app_id"),
)

app_idempotency = Table(
    "app_idempotency",
    metadata,
    Column("app_id", ID, ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(64), primary_key=True),
    # What the key was used for (method and path): the same key on another request is refused.
    Column("request", String(200), nullable=False),
    # SHA-256 of the body: the same key with another body is refused.
    Column("body_hash", String(64), nullable=False),
    Column("status", Integer, nullable=True),
    Column("response", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

app_subscriptions = Table(
    "app_subscriptions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("app_id", ID, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    # Comma-separated event types (``report.filed``, ``task.*`` …).
    Column("event_types", Text, nullable=False),
    # JSON object: {"category": [...], "unit": <unit id>, "task_category": [...]}.
    Column("filters", Text, nullable=False),
    # ``webhook`` or ``stream``.
    Column("mode", String(16), nullable=False),
    Column("url", String(2000), nullable=True),
    # whsec_… (current) and the previous one during a rotation (both sign until previous_expires_at).
    Column("secret", String(100), nullable=True),
    Column("previous_secret", String(100), nullable=True),
    Column("previous_expires_at", UTCDateTime, nullable=True),
    # ``active`` | ``disabled`` (by the app, or automatically after failing too long).
    Column("status", String(16), nullable=False),
    Column("disabled_reason", String(200), nullable=True),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_app_subscriptions_app", "app_id"),
)

_PENDING = text("state = 'pending'")

app_deliveries = Table(
    "app_deliveries",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("subscription_id", ID, ForeignKey("app_subscriptions.id", ondelete="CASCADE"), nullable=False),
    Column("app_id", ID, nullable=False),
    # The outbox row (``outbox_events.id``) and its stable id, sent as ``webhook-id``.
    Column("outbox_id", ID, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(64), nullable=False),
    # ``report:12``: deliveries of one aggregate to one subscription go in creation order.
    Column("aggregate_key", String(80), nullable=False),
    Column("event_created_at", UTCDateTime, nullable=False),
    # ``pending`` | ``delivered`` | ``dead``
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    # Claimed by a worker until then (a crashed worker's claim lapses; the next attempt reuses webhook-id).
    Column("leased_until", UTCDateTime, nullable=True),
    Column("leased_by", String(64), nullable=True),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("subscription_id", "outbox_id", name="uq_app_deliveries_sub_event"),
    Index("ix_app_deliveries_due", "state", "next_attempt_at"),
    Index("ix_app_deliveries_order", "subscription_id", "aggregate_key", "id"),
    # Pending deliveries only (migration 0012; docs/webhooks.md "The claim query"): the claims walk the
    # first in outbox order and stop at their limit, and the per-aggregate "earlier one pending?" check
    # is one probe of the second, so a claim costs the same at 50,000 pending rows as at 50.
    Index("ix_app_deliveries_pending", "outbox_id", postgresql_where=_PENDING, sqlite_where=_PENDING),
    Index(
        "ix_app_deliveries_pending_aggregate",
        "subscription_id",
        "aggregate_key",
        "outbox_id",
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    ),  # fmt: skip
)

app_delivery_attempts = Table(
    "app_delivery_attempts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("delivery_id", ID, ForeignKey("app_deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("subscription_id", ID, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    # HTTP status, or NULL when no answer came (``error`` says why).
    Column("status", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("error", String(200), nullable=True),
    Column("response_excerpt", String(500), nullable=True),
    Index("ix_app_delivery_attempts_sub", "subscription_id", "id"),
    Index("ix_app_delivery_attempts_delivery", "delivery_id"),
)
