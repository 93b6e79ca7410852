"""Issue 15 item 4: a large notice's receipts, packed at send time and written after the commit.

``notice_pending_receipts`` holds one row per notice whose receipts are not
written yet (messaging/notices/deferred.py): the send commits the notice and
this row instead of ~200,000 receipt rows, so the connected recipients get the
notice within a second; the relay writes the receipts after the commit and
deletes the row in that transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, drop_table, fk, pk

revision = "0014_notice_pending_receipts"
down_revision = "0013_group_fanout"


def upgrade() -> None:
    op.create_table(
        "notice_pending_receipts",
        sa.Column("notice_id", ID, autoincrement=False, nullable=False),
        sa.Column("receipts", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        fk("notice_pending_receipts", "notice_id", "notices", ondelete="CASCADE"),
        pk("notice_pending_receipts", "notice_id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Stored out of line as is: the packed columns are written once and read
        # once, and compressing ~6.7 MB on insert cost more than storing it.
        op.execute("ALTER TABLE notice_pending_receipts ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    drop_table("notice_pending_receipts")
