"""The open platform (issue 13): apps, secrets, idempotency keys, subscriptions, deliveries, attempts.

No application imports (apps/schema.py is the model these tables match).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS, drop_table, id_column, pk, ref_column

revision = "0009_apps"
down_revision = "0008_admin_audit"


def upgrade() -> None:
    op.create_table(
        "apps",
        id_column(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("client_id", sa.String(40), nullable=False),
        sa.Column("owning_unit_id", ID, nullable=False),
        sa.Column("owner_position_id", ID, nullable=True),
        sa.Column("subtree_unit_id", ID, nullable=False),
        sa.Column("visibility", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("rate_per_minute", sa.Integer(), nullable=False),
        ref_column("apps", "bot_person_id", "persons"),
        sa.Column("bot_position_id", ID, nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        pk("apps"),
        sa.UniqueConstraint("name", name="uq_apps_name"),
        sa.UniqueConstraint("client_id", name="uq_apps_client_id"),
    )
    op.create_table(
        "app_secrets",
        id_column(),
        ref_column("app_secrets", "app_id", "apps", ondelete="CASCADE"),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        pk("app_secrets"),
        sa.UniqueConstraint("secret_hash", name="uq_app_secrets_secret_hash"),
    )
    op.create_index("ix_app_secrets_app", "app_secrets", ["app_id"])
    op.create_table(
        "app_idempotency",
        ref_column("app_idempotency", "app_id", "apps", ondelete="CASCADE"),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("request", sa.String(200), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        pk("app_idempotency", "app_id", "key"),
    )
    op.create_table(
        "app_subscriptions",
        id_column(),
        ref_column("app_subscriptions", "app_id", "apps", ondelete="CASCADE"),
        sa.Column("event_types", sa.Text(), nullable=False),
        sa.Column("filters", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("url", sa.String(2000), nullable=True),
        sa.Column("secret", sa.String(100), nullable=True),
        sa.Column("previous_secret", sa.String(100), nullable=True),
        sa.Column("previous_expires_at", TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disabled_reason", sa.String(200), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        pk("app_subscriptions"),
    )
    op.create_index("ix_app_subscriptions_app", "app_subscriptions", ["app_id"])
    op.create_table(
        "app_deliveries",
        id_column(),
        ref_column("app_deliveries", "subscription_id", "app_subscriptions", ondelete="CASCADE"),
        sa.Column("app_id", ID, nullable=False),
        sa.Column("outbox_id", ID, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("aggregate_key", sa.String(80), nullable=False),
        sa.Column("event_created_at", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("leased_until", TS, nullable=True),
        sa.Column("leased_by", sa.String(64), nullable=True),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        pk("app_deliveries"),
        sa.UniqueConstraint("subscription_id", "outbox_id", name="uq_app_deliveries_sub_event"),
    )
    op.create_index("ix_app_deliveries_due", "app_deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_app_deliveries_order", "app_deliveries", ["subscription_id", "aggregate_key", "id"])
    op.create_table(
        "app_delivery_attempts",
        id_column(),
        ref_column("app_delivery_attempts", "delivery_id", "app_deliveries", ondelete="CASCADE"),
        sa.Column("subscription_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(200), nullable=True),
        sa.Column("response_excerpt", sa.String(500), nullable=True),
        pk("app_delivery_attempts"),
    )
    op.create_index("ix_app_delivery_attempts_sub", "app_delivery_attempts", ["subscription_id", "id"])
    op.create_index("ix_app_delivery_attempts_delivery", "app_delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    drop_table("app_delivery_attempts")
    drop_table("app_deliveries")
    drop_table("app_subscriptions")
    drop_table("app_idempotency")
    drop_table("app_secrets")
    drop_table("apps")
