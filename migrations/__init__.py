"""Alembic migrations for ZZD (one schema for SQLite and PostgreSQL)."""
