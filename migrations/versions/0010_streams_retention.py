"""Issue 15: stream counters updated in place, and the retention job's lease row.

``person_streams`` gets fillfactor 30 on PostgreSQL; ``maintenance_leases``
holds the lease and cursor of the retention pass (messaging/retention.py).

Why: every event bumps its person's ``last_seq``; a send to a 2,000-member
group bumps 2,000 rows in one statement. With full pages each bump wrote a new
tuple on another page *and* a new primary-key entry (non-HOT), ~64 % of the
database time of such a send (BENCHMARKS.md, issue 5 profile). With room left
on each page PostgreSQL updates the row on its own page and skips the index
(a HOT update: ``last_seq`` is in no index). The table is one small row per
person (1.22 M rows ≈ 100 MB at this fillfactor), so it is rewritten here
(``CLUSTER`` on its primary key, a short exclusive lock) to spread the
existing rows out. SQLite has no such setting: nothing to do there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS, drop_table, pk

revision = "0010_streams_retention"
down_revision = "0009_apps"


def upgrade() -> None:
    op.create_table(
        "maintenance_leases",
        sa.Column("id", ID, autoincrement=False, nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("leased_until", TS, nullable=True),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("passed_at", TS, nullable=True),
        pk("maintenance_leases"),
        sa.UniqueConstraint("name", name="uq_maintenance_leases_name"),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE person_streams SET (fillfactor = 30)")
    op.execute("CLUSTER person_streams USING pk_person_streams")


def downgrade() -> None:
    drop_table("maintenance_leases")
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE person_streams RESET (fillfactor)")
