"""A sign-in session remembers how its device named itself (登录设备管理).

``auth_sessions.client_label``: the ``client_label`` of the token request that signed in or last
renewed the session, else its ``User-Agent``, cleaned and cut to 100 characters
(``kernel.text.clean_label``), so that the list of one's sessions can say which device each is.
Null for sessions signed in before, and for a client that sent neither. No application imports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_session_client_label"
down_revision = "0020_audit_actor_units"


def upgrade() -> None:
    op.add_column("auth_sessions", sa.Column("client_label", sa.String(100), nullable=True))


def downgrade() -> None:
    # Not batch_alter_table: on SQLite it copies the table and drops the old one, and with foreign keys on
    # (kernel.db.database) that drop cascades to every refresh token, signing everyone out. SQLite has
    # dropped a plain column in place since 3.35 (2021), as PostgreSQL does.
    op.execute("ALTER TABLE auth_sessions DROP COLUMN client_label")
