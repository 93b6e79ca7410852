"""``units.retired_by``: a unit an administrator retired stays retired across division re-imports.

Before this, ``zzd org import`` revived every unit of the files that was dissolved,
including one an administrator had retired (or merged away) through the API, and so
silently brought back the admin grants over it. The import now keeps a unit with
``retired_by`` set retired. Units retired or merged before this migration are found
in the audit log: the retirement's (or merge's) entry by a person was written with
the same time as the unit's ``dissolved_at`` (one ``now`` per edit). An entry
already pruned (``ZZD_AUDIT_RETENTION_DAYS``) cannot be found; such a unit is left
unmarked, as before. No application imports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_units_retired_by"
down_revision = "0016_end_retired_holders"


def upgrade() -> None:
    op.add_column("units", sa.Column("retired_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True))
    op.execute(
        "UPDATE units SET retired_by = (SELECT a.actor_person_id FROM audit_log a"
        " WHERE a.action IN ('org.unit_retired', 'org.units_merged') AND a.outcome = 'ok'"
        " AND a.actor_person_id IS NOT NULL AND a.at = units.dissolved_at ORDER BY a.id DESC LIMIT 1)"
        " WHERE dissolved_at IN (SELECT a.at FROM audit_log a"
        " WHERE a.action IN ('org.unit_retired', 'org.units_merged') AND a.outcome = 'ok'"
        " AND a.actor_person_id IS NOT NULL)"
    )


def downgrade() -> None:
    # Not a batch (table copy): other tables' foreign keys point at units, and SQLite >= 3.35 drops a column itself.
    op.execute("ALTER TABLE units DROP COLUMN retired_by")
