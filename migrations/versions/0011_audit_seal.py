"""Issue 16: audit entries are inserted unsealed and chained afterwards by a sealer (kernel/audit.py).

``audit_log`` gets ``seq`` (the chain position, null until sealed; unique) and
nullable ``prev_hash``/``hash``; its ``id`` now comes from the table's own
sequence (PostgreSQL) or AUTOINCREMENT (SQLite, so an id is never reused after
pruning) instead of ``audit_head.last_id + 1`` under the head's row lock.
``audit_head``'s ``last_id``/``pruned_through_id`` become ``last_seq``/
``pruned_through_seq``.

Existing entries keep their hashes: they were chained with ``id`` as the
position, so ``seq = id`` for them, and the hash formula leaves ``id`` out when
it equals ``seq`` — the chain written before this revision verifies unchanged.

Why: the head row was locked from each audited change to its commit, which
serialised every notice and task write across processes (docs/reliability.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID

revision = "0011_audit_seal"
down_revision = "0010_streams_retention"


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("audit_head") as batch:
        batch.alter_column("last_id", new_column_name="last_seq")
        batch.alter_column("pruned_through_id", new_column_name="pruned_through_seq")
    if pg:
        op.add_column("audit_log", sa.Column("seq", ID, nullable=True))
        op.alter_column("audit_log", "prev_hash", existing_type=sa.String(64), nullable=True)
        op.alter_column("audit_log", "hash", existing_type=sa.String(64), nullable=True)
        op.execute("CREATE SEQUENCE audit_log_id_seq OWNED BY audit_log.id")
        op.execute(
            "SELECT setval('audit_log_id_seq', GREATEST((SELECT COALESCE(MAX(id), 0) FROM audit_log), "
            "(SELECT COALESCE(MAX(last_seq), 0) FROM audit_head)) + 1, false)"
        )
        op.execute("ALTER TABLE audit_log ALTER COLUMN id SET DEFAULT nextval('audit_log_id_seq')")
    else:
        # Recreated with ``id INTEGER PRIMARY KEY AUTOINCREMENT``; the counter starts past every id used.
        with op.batch_alter_table("audit_log", recreate="always", table_kwargs={"sqlite_autoincrement": True}) as batch:
            batch.alter_column("id", existing_type=ID, autoincrement=True)
            batch.add_column(sa.Column("seq", ID, nullable=True))
            batch.alter_column("prev_hash", existing_type=sa.String(64), nullable=True)
            batch.alter_column("hash", existing_type=sa.String(64), nullable=True)
        op.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'audit_log', "
            "MAX((SELECT COALESCE(MAX(id), 0) FROM audit_log), (SELECT COALESCE(MAX(last_seq), 0) FROM audit_head)) "
            "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'audit_log')"
        )
    op.execute("UPDATE audit_log SET seq = id")
    op.create_index("ux_audit_log_seq", "audit_log", ["seq"], unique=True)


def downgrade() -> None:
    raise NotImplementedError("unsealed entries have no place in the old dense-id chain; restore a backup instead")
