"""Deferred notice fan-out: a per-receipt "event written" marker and a lease on finishing it.

The send transaction no longer writes one event per recipient; the relay
(messaging/notices/relay.py) does, after the commit. Existing notices were fanned
out in their send transaction, so their receipts are marked done here. No
application imports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import TS

revision = "0007_notice_fanout"
down_revision = "0006_attachments"


def upgrade() -> None:
    op.add_column("notices", sa.Column("fanout_done_at", TS, nullable=True))
    op.add_column("notices", sa.Column("fanout_claimed_by", sa.String(64), nullable=True))
    op.add_column("notices", sa.Column("fanout_lease_until", TS, nullable=True))
    op.create_index("ix_notices_fanout_done", "notices", ["fanout_done_at"])
    op.add_column("notice_receipts", sa.Column("fanned_out", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE notices SET fanout_done_at = created_at")
    op.execute(sa.text("UPDATE notice_receipts SET fanned_out = :t").bindparams(t=True))


def downgrade() -> None:
    with op.batch_alter_table("notice_receipts") as batch:
        batch.drop_column("fanned_out")
    op.drop_index("ix_notices_fanout_done", table_name="notices")
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("fanout_lease_until")
        batch.drop_column("fanout_claimed_by")
        batch.drop_column("fanout_done_at")
