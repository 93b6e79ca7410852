"""Storage plumbing shared by every domain package: metadata, engines, dialect helpers."""

from org_tree.db.base import Base, UTCDateTime, metadata
from org_tree.db.database import Database

__all__ = ["Base", "Database", "UTCDateTime", "metadata"]
