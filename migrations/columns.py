"""Column types every revision uses, defined once.

They must match ``kernel.db.types.ID`` and ``kernel.db.base.UTCDateTime`` as the
database sees them, without importing application code (a revision must build
the same schema whatever the application later becomes). Frozen: a revision
that needs another type spells it out, so older revisions never change.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["ID", "TS"]

#: BIGINT on PostgreSQL; ``INTEGER`` on SQLite, the only type it auto-increments as a primary key.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: Timestamps are stored with their time zone (UTC).
TS = sa.DateTime(timezone=True)
