"""Content-addressed uploaded files (photos of grid reports, issue 6)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS, drop_table, fk, pk

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
        fk("attachments", "uploaded_by", "persons"),
        pk("attachments", "digest"),
    )
    op.create_table(
        "attachment_links",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("ref_kind", sa.String(32), nullable=False),
        sa.Column("ref_id", sa.BigInteger(), nullable=False),
        fk("attachment_links", "digest", "attachments", referred_column="digest"),
        pk("attachment_links", "digest", "ref_kind", "ref_id"),
    )
    op.create_index("ix_attachment_links_ref", "attachment_links", ["ref_kind", "ref_id"])


def downgrade() -> None:
    drop_table("attachment_links", "ix_attachment_links_ref")
    drop_table("attachments")
