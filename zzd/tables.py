"""Imports every table module so the shared ``metadata`` is complete (for Alembic and tests)."""

from __future__ import annotations

from sqlalchemy import MetaData

import apps.schema
import kernel.audit
import kernel.schema
import messaging.attachments.schema
import messaging.conversations.schema
import messaging.notices.schema
import messaging.schema
import messaging.tasks.schema
import org_tree.org_schema
from kernel.db.base import metadata

__all__ = ["all_metadata"]

_MODULES = (
    kernel.schema,
    kernel.audit,
    org_tree.org_schema,
    messaging.schema,
    messaging.notices.schema,
    messaging.conversations.schema,
    messaging.tasks.schema,
    messaging.attachments.schema,
    apps.schema,
)


def all_metadata() -> MetaData:
    return metadata
