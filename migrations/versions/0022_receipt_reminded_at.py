"""A receipt remembers its last one-click reminder (``notice_receipts.reminded_at``).

``messaging/notices/remind.py`` reminds a person by hand at most once a minute per notice,
whichever unit is asked and whichever process answers: the minute used to be kept in each
process's memory per (notice, unit), so naming the grid's township, county and city in turn
reminded the same people three times at once (江西 audit). Null until the first reminder. No
application imports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import TS

revision = "0022_receipt_reminded_at"
down_revision = "0021_session_client_label"


def upgrade() -> None:
    op.add_column("notice_receipts", sa.Column("reminded_at", TS, nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN, not batch mode's table copy (see 0021): SQLite has dropped a column in place since 3.35.
    op.execute("ALTER TABLE notice_receipts DROP COLUMN reminded_at")
