"""Issue 13: partial indexes on pending app deliveries, for the webhook and stream claims.

Why: a claim asks for the first due, unleased pending deliveries in outbox
order whose aggregate has no earlier delivery pending. With only
``(state, next_attempt_at)`` to go on, PostgreSQL read every pending row,
checked each against the aggregate index (which holds delivered rows too) and
sorted them all before taking the first few: the cost of each claim grew with
the backlog, and at the issue's full rate (tens of thousands pending) the
claim hit the 10 s statement timeout. ``(outbox_id) WHERE state = 'pending'``
lets the claim walk pending rows in the order it wants and stop at its limit;
``(subscription_id, aggregate_key, outbox_id) WHERE state = 'pending'`` makes
the per-aggregate check one probe over pending rows only. Both indexes stay
as small as the backlog, not the delivery history. Plans before and after:
docs/webhooks.md. SQLite has partial indexes too (same statements).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_pending_deliveries"
down_revision = "0011_audit_seal"

PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.create_index(
        "ix_app_deliveries_pending", "app_deliveries", ["outbox_id"], postgresql_where=PENDING, sqlite_where=PENDING
    )
    op.create_index(
        "ix_app_deliveries_pending_aggregate",
        "app_deliveries",
        ["subscription_id", "aggregate_key", "outbox_id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_app_deliveries_pending_aggregate", table_name="app_deliveries")
    op.drop_index("ix_app_deliveries_pending", table_name="app_deliveries")
