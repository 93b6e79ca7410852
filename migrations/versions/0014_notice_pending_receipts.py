"""Issue 15 item 4: a large notice's receipts, packed at send time and written after the commit.

``notice_pending_receipts`` holds one row per notice whose receipts are not
written yet (messaging/notices/deferred.py): the send commits the notice and
this row instead of ~200,000 receipt rows, so the connected recipients get the
notice within a second; the relay writes the receipts after the commit and
deletes the row in that transaction.

Revision ID: 0014_notice_pending_receipts
Revises: 0013_group_fanout
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID

revision = "0014_notice_pending_receipts"
down_revision = "0013_group_fanout"


def upgrade() -> None:
    op.create_table(
        "notice_pending_receipts",
        sa.Column("notice_id", ID, autoincrement=False, nullable=False),
        sa.Column("receipts", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["notice_id"],
            ["notices.id"],
            name="fk_notice_pending_receipts_notice_id_notices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("notice_id", name="pk_notice_pending_receipts"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Stored out of line as is: the packed columns are written once and read
        # once, and compressing ~6.7 MB on insert cost more than storing it.
        op.execute("ALTER TABLE notice_pending_receipts ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("notice_pending_receipts")
