"""A system note's detail is stored with the note, so history shows what the event showed.

``messages.system`` (JSON text, NULL for ordinary messages) keeps the ``system``
object of a note (``{"event": "handover", "position_id", "holders"}``,
``{"event": "members", "joined", "left"}`` …) that ``message.new`` carries.
Before this, history answered ``system: null`` for every note. Notes written
before this migration keep NULL (their detail was never stored). No application
imports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_message_system"
down_revision = "0014_notice_pending_receipts"


def upgrade() -> None:
    op.add_column("messages", sa.Column("system", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("system")
