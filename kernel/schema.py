"""Identity tables every package refers to: persons and their login sessions.

The org tree's own tables (units, roles, positions, assignments) are in
``org_tree/org_schema.py``; they point at ``persons`` from above.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, String, Table, Text

from kernel.db.base import UTCDateTime, metadata
from kernel.db.types import ID

__all__ = ["activation_codes", "auth_sessions", "persons", "refresh_tokens"]

persons = Table(
    "persons",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    # Login names are NFC-normalised and lower-cased before storage.
    Column("login", String(64), unique=True, nullable=True),
    Column("name", String(100), nullable=False),
    # NULL means the person cannot log in with a password (e.g. synthetic people).
    Column("password_hash", Text, nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Mobile number for the address book (通讯录); set by bulk provisioning.
    Column("phone", String(32), nullable=True),
)

auth_sessions = Table(
    "auth_sessions",
    metadata,
    # A login session; every access token carries its id as ``sid``.
    Column("id", String(32), primary_key=True),
    Column("person_id", ID, ForeignKey("persons.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    # How the device named itself at sign-in or its last renewal (kernel.text.clean_label; revision 0021).
    Column("client_label", String(100), nullable=True),
    Index("ix_auth_sessions_person", "person_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    # Only the SHA-256 of a refresh token is stored; the token itself is shown once.
    Column("token_hash", String(64), primary_key=True),
    Column("session_id", String(32), ForeignKey("auth_sessions.id", ondelete="CASCADE"), nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    # Set when the token is exchanged; presenting it again means it leaked.
    Column("used_at", UTCDateTime, nullable=True),
    Index("ix_refresh_tokens_session", "session_id"),
)

activation_codes = Table(
    "activation_codes",
    metadata,
    # One-time code handed to a provisioned person, who sets their own password with it.
    # Only the SHA-256 is stored; the code is printed once by ``zzd person import``.
    Column("person_id", ID, ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True),
    Column("code_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)
