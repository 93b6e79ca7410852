"""Content-addressed uploaded files (photos of grid reports, issue 6).

Revision ID: 0006_attachments
Revises: 0005_tasks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS

revision = "0006_attachments"
down_revision = "0005_tasks"


def upgrade() -> None:
    op.create_table(
        "attachments",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("uploaded_by", ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["uploaded_by"], ["persons.id"], name="fk_attachments_uploaded_by_persons"),
        sa.PrimaryKeyConstraint("digest", name="pk_attachments"),
    )
    op.create_table(
        "attachment_links",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("ref_kind", sa.String(32), nullable=False),
        sa.Column("ref_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["digest"], ["attachments.digest"], name="fk_attachment_links_digest_attachments"),
        sa.PrimaryKeyConstraint("digest", "ref_kind", "ref_id", name="pk_attachment_links"),
    )
    op.create_index("ix_attachment_links_ref", "attachment_links", ["ref_kind", "ref_id"])


def downgrade() -> None:
    op.drop_index("ix_attachment_links_ref", table_name="attachment_links")
    op.drop_table("attachment_links")
    op.drop_table("attachments")
