"""A task may carry the time it must be resolved by (``tasks.due_at``, 截止时间).

``POST /api/v1/tasks`` and ``POST /api/v1/notices/{id}/tasks`` take an optional ``due_at``: the
task's resolve deadline is then that time instead of "accepted + the category's resolve_within",
and its accept deadline never later (docs/tasks.md "Deadlines and escalation"). Null for every
task made before, and for one created without it: its deadlines stay the category's. No
application imports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import TS

revision = "0023_task_due_at"
down_revision = "0022_receipt_reminded_at"


def upgrade() -> None:
    op.add_column("tasks", sa.Column("due_at", TS, nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (see 0022): SQLite has dropped a column in place since 3.35.
    op.execute("ALTER TABLE tasks DROP COLUMN due_at")
