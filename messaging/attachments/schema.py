"""Tables of uploads: one row per stored file, one link per thing that uses it.

The migration ``migrations/versions/0006_attachments.py`` creates exactly these
tables; ``tests/test_migrations.py`` compares the two.

Who may use a file is recorded as a link too: every person who uploaded the
bytes gets an ``("uploader", person_id)`` link. Files are deduplicated by
content, so the first uploader in ``attachments.uploaded_by`` is not the only
one who owns them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String, Table

import org_tree.org_schema  # noqa: F401  (registers persons in the shared metadata)
from kernel.db.base import UTCDateTime, metadata
from kernel.db.types import ID

__all__ = ["attachment_links", "attachments"]

attachments = Table(
    "attachments",
    metadata,
    # Lower-case hex SHA-256 of the bytes: the file's name in the blob store.
    Column("digest", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    # Sniffed from the bytes, never the client's claim.
    Column("content_type", String(64), nullable=False),
    Column("uploaded_by", ID, ForeignKey("persons.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

attachment_links = Table(
    "attachment_links",
    metadata,
    Column("digest", String(64), ForeignKey("attachments.digest"), primary_key=True),
    # What uses the file, e.g. ("report", 12), ("task_event", 40), ("uploader", person_id).
    Column("ref_kind", String(32), primary_key=True),
    Column("ref_id", BigInteger, primary_key=True),
    Index("ix_attachment_links_ref", "ref_kind", "ref_id"),
)
