"""Tables of the org tree: units, roles, positions, assignments, and the change counter.

Why ``org_version`` and ``org_changes``: every server process keeps the tree
in memory (``org_tree.index``). Each write bumps the single ``org_version``
row in its own transaction (the row lock also orders concurrent writers), so
a process learns "something changed" with one cheap query, and reads
``org_changes`` after its last version to decide whether to patch holders of
a few positions or rebuild.

The migration ``migrations/versions/0002_org_tree.py`` creates exactly these
tables; keep the two in step (a test compares them).
"""

from __future__ import annotations

import logging

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
)

import kernel.schema  # noqa: F401  (registers ``persons``, the target of assignments.person_id)
from kernel.db.base import UTCDateTime, metadata
from kernel.db.types import ID

logger = logging.getLogger(__name__)

__all__ = ["admin_grants", "assignments", "org_changes", "org_version", "positions", "roles", "units"]

units = Table(
    "units",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    # NBS code for real units (2/4/6/9/12 digits), village code + 3 digits for grids.
    Column("code", String(32), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    # 1 province … 6 grid (org_tree.divisions.Level).
    Column("level", SmallInteger, nullable=False),
    Column("parent_id", ID, ForeignKey("units.id"), nullable=True),
    # Lower-case pinyin without tones and its initials, for 找岗位 search (kcq → 柯城区).
    Column("pinyin", String(400), nullable=False, default=""),
    Column("pinyin_initials", String(100), nullable=False, default=""),
    # True when the unit came from a division import (and may be removed by the next one).
    Column("imported", Boolean, nullable=False, default=False),
    # Set when the unit no longer exists; rows are kept so history stays readable.
    Column("dissolved_at", UTCDateTime, nullable=True),
    # The administrator who retired the unit (or merged it away) through the API; NULL for a unit that is
    # alive or that an import (or the system) dissolved. Such a unit stays retired across re-imports.
    Column("retired_by", ID, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("level BETWEEN 1 AND 6", name="level_range"),
    Index("ix_units_parent", "parent_id"),
)

roles = Table(
    "roles",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    # Stable identifier used in selectors and the catalog (e.g. ``grid_worker``).
    Column("key", String(64), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    # Comma-separated level names where the role exists (``township,village``).
    Column("levels", String(100), nullable=False),
    # Jurisdiction rule: ``subtree`` | ``chain`` | ``unit`` | ``none`` (org_tree.jurisdiction).
    Column("jurisdiction", String(16), nullable=False),
    # The unit's head: target of the "unit head" vacancy fallback and of ``head(…)``.
    Column("is_head", Boolean, nullable=False, default=False),
    # Positions of this role are pools held by several people.
    Column("pool", Boolean, nullable=False, default=False),
    # Created in every unit of its levels by a division import.
    Column("auto", Boolean, nullable=False, default=True),
    Column("created_at", UTCDateTime, nullable=False),
)

positions = Table(
    "positions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("unit_id", ID, ForeignKey("units.id"), nullable=False),
    Column("role_id", ID, ForeignKey("roles.id"), nullable=False),
    # Optional distinguishing title when a unit has several positions of one role.
    Column("title", String(100), nullable=True),
    Column("pool", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("removed_at", UTCDateTime, nullable=True),
    Index("ix_positions_unit_role", "unit_id", "role_id"),
    Index("ix_positions_role", "role_id"),
)

assignments = Table(
    "assignments",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=False),
    Column("position_id", ID, ForeignKey("positions.id"), nullable=False),
    # primary | deputy | acting
    Column("kind", String(8), nullable=False),
    Column("start_at", UTCDateTime, nullable=False),
    # NULL while current; set (never deleted) when the assignment ends, so history stays.
    Column("end_at", UTCDateTime, nullable=True),
    CheckConstraint("kind IN ('primary', 'deputy', 'acting')", name="kind_valid"),
    Index("ix_assignments_position", "position_id"),
    Index("ix_assignments_person", "person_id"),
)

org_version = Table(
    "org_version",
    metadata,
    # Exactly one row (id = 1); ``version`` grows by one per committed org change.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

org_changes = Table(
    "org_changes",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("version", BigInteger, nullable=False),
    # ``tree`` (units/roles/positions changed: rebuild) or ``holders`` (only who holds ``position_id``).
    Column("scope", String(8), nullable=False),
    Column("position_id", ID, nullable=True),
    Column("detail", Text, nullable=True),
    Column("changed_at", UTCDateTime, nullable=False),
    Index("ix_org_changes_version", "version"),
)

admin_grants = Table(
    "admin_grants",
    metadata,
    # An administrator's rights: a person, a set of permissions, over one unit's subtree
    # (``unit_id`` NULL: the whole tree). See org_tree/grants.py and docs/admin.md.
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("person_id", ID, ForeignKey("persons.id"), nullable=False),
    Column("unit_id", ID, ForeignKey("units.id"), nullable=True),
    # Comma-separated permission names, sorted (org,assignments,roles,settings,apps,audit,grants).
    Column("perms", String(200), nullable=False),
    # NULL: granted from the command line by the operator.
    Column("granted_by", ID, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revoked_by", ID, nullable=True),
    Index("ix_admin_grants_person", "person_id"),
)
