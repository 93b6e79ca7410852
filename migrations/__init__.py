"""Alembic migrations for ZZD (one schema for SQLite and PostgreSQL).

Every revision in ``versions/`` is plain ``op.create_table``/``op.add_column``
with the constraint names the naming convention of ``kernel/db/base.py``
produces, so autogenerate against the models shows no diff
(``tests/test_migrations.py`` checks it on both backends). A revision imports no
application code, only ``migrations.columns`` for the shared column types:
what it builds must not change when the application does. ``branch_labels``
and ``depends_on`` are left at alembic's defaults (no branches).
"""
