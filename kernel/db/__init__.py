"""Storage plumbing shared by every domain package: metadata, engines, dialect helpers."""

from kernel.db.base import Base, UTCDateTime, metadata
from kernel.db.database import Database

__all__ = ["Base", "Database", "UTCDateTime", "metadata"]
