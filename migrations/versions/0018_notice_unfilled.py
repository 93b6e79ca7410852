"""A notice keeps how many addressed positions nobody stands in for, so a retry answers it too.

``notices.audience_unfilled``: the vacant positions of the frozen audience that
no fallback filled (no receipt). The first answer to ``POST /api/v1/notices``
said it; a retry with the same ``client_msg_id`` answered 0, as nothing stored
it. Notices sent before this migration keep NULL and a retry answers 0 for them.
No application imports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_notice_unfilled"
down_revision = "0017_units_retired_by"


def upgrade() -> None:
    op.add_column("notices", sa.Column("audience_unfilled", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("audience_unfilled")
