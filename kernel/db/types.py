"""Column types that mean the same on both backends."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer

__all__ = ["ID"]

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets BIGINT.
ID = BigInteger().with_variant(Integer(), "sqlite")
