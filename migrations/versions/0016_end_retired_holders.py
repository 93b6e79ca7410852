"""Assignments left open on positions a unit's retirement removed end when the position was removed.

Before this, ``POST /api/v1/org/units/{ref}/retire`` set ``positions.removed_at``
but left those positions' assignments open (retiring a single position ended
them); a former holder's ``GET /api/v1/me/positions`` then answered 404 for the
removed position. The retirement now ends them in its own transaction; this
ends the ones it left, at the position's ``removed_at``. Data only; nothing to
undo. No application imports.
"""

from __future__ import annotations

from alembic import op

revision = "0016_end_retired_holders"
down_revision = "0015_message_system"


def upgrade() -> None:
    op.execute(
        "UPDATE assignments SET end_at = (SELECT p.removed_at FROM positions p WHERE p.id = assignments.position_id)"
        " WHERE end_at IS NULL"
        " AND position_id IN (SELECT id FROM positions WHERE removed_at IS NOT NULL)"
    )


def downgrade() -> None:
    """Nothing: the ended assignments were wrong to be open."""
