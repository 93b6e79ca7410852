"""A refused administrative attempt is also filed under the actor's own units.

``audit_log.actor_unit_paths``: for ``admin.denied`` entries, the ``unit_path``s
of the units the actor holds positions or grants in, each after a space
(`` /1/2/3/ /1/2/9/``), so the auditors of the actor's own county see what
they tried elsewhere, not only the target's auditors (found by the
administration audit). Null for every other entry, and for entries written
before; the keyed hash covers it when set (kernel/audit.py). No application imports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_audit_actor_units"
down_revision = "0019_audit_key"


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("actor_unit_paths", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("actor_unit_paths")
