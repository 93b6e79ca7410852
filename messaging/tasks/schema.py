"""Tables of tasks and grid reports, their timers and editable categories.

``outbox_events`` (created by the same migration) is shared by every domain and
lives in ``messaging/schema.py``; it is re-exported here for older imports.

The migration ``migrations/versions/0005_tasks.py`` creates exactly these
tables; keep the two in step (``tests/test_migrations.py`` compares them).

Why ``version`` on a task: every transition names the version it saw and the
update is ``… WHERE id = ? AND version = ?``; a stale writer changes no row and
gets a conflict, so two people acting at once cannot both win.

Why coordinates as integers: microdegrees are exact on both backends and
compare the same everywhere (floats differ in type between SQLite and
PostgreSQL and round on the way through JSON).
"""

from __future__ import annotations

import logging

from sqlalchemy import (
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
    UniqueConstraint,
)

import org_tree.org_schema  # noqa: F401  (registers persons/positions/units in the shared metadata)
from kernel.db.base import UTCDateTime, metadata
from kernel.db.types import ID
from messaging.schema import outbox_events

logger = logging.getLogger(__name__)

__all__ = ["outbox_events", "reports", "task_categories", "task_events", "task_timers", "tasks"]

task_categories = Table(
    "task_categories",
    metadata,
    # Stable key used by clients and routing data, e.g. ``river_litter``.
    Column("key", String(32), primary_key=True),
    Column("name", String(100), nullable=False),
    # JSON text of the rules (messaging.tasks.categories.Category); seeded from categories.toml.
    Column("rules", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

reports = Table(
    "reports",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("reporter_person_id", ID, ForeignKey("persons.id"), nullable=False),
    # The grid-level position the worker filed as; ``grid_unit_id`` is its unit.
    Column("reporter_position_id", ID, nullable=False),
    Column("grid_unit_id", ID, nullable=False),
    # The reporter's idempotency key: a retried filing returns the first report.
    Column("client_msg_id", String(64), nullable=False),
    Column("category", String(32), nullable=False),
    Column("text", Text, nullable=False),
    # WGS-84 in microdegrees.
    Column("lat_e6", Integer, nullable=False),
    Column("lon_e6", Integer, nullable=False),
    Column("beyond_capacity", Boolean, nullable=False),
    # JSON list of photo digests (sha256 hex of uploads, messaging.attachments).
    Column("photos", Text, nullable=False),
    Column("task_id", ID, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("reporter_person_id", "client_msg_id", name="uq_reports_reporter_client_msg"),
    Index("ix_reports_grid", "grid_unit_id", "id"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("category", String(32), nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    # messaging.tasks.lifecycle.State
    Column("state", String(16), nullable=False),
    # Bumped by every transition (optimistic concurrency, see the module docstring).
    Column("version", Integer, nullable=False),
    # The position responsible now; ``pool`` (JSON list of position ids) may also accept a shared task.
    Column("owner_position_id", ID, nullable=False),
    Column("owner_unit_id", ID, nullable=False),
    Column("pool", Text, nullable=False),
    # Where the matter arose (the grid of a report, else the first owner's unit): stats roll up from it.
    Column("origin_unit_id", ID, nullable=False),
    # Who asked for the work: they (and later holders of their position) verify, close, return, cancel.
    Column("creator_person_id", ID, nullable=False),
    Column("creator_position_id", ID, nullable=False),
    # Earlier owners (JSON list of position ids) keep seeing the task after reassignment/escalation.
    Column("watchers", Text, nullable=False),
    # direct | notice | report, and the id of that notice or report.
    Column("source", String(8), nullable=False),
    Column("source_id", ID, nullable=True),
    Column("client_msg_id", String(64), nullable=False),
    Column("escalation_level", SmallInteger, nullable=False),
    Column("accept_due_at", UTCDateTime, nullable=True),
    Column("resolve_due_at", UTCDateTime, nullable=True),
    # When the creator wants it resolved (截止时间), null: the category's windows only. Kept through
    # escalation, reassignment and return; the accept and resolve deadlines are derived from it.
    Column("due_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("accepted_at", UTCDateTime, nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("closed_at", UTCDateTime, nullable=True),
    CheckConstraint("source IN ('direct', 'notice', 'report')", name="source_valid"),
    UniqueConstraint(
        "creator_person_id", "client_msg_id", "owner_position_id", name="uq_tasks_creator_client_msg_owner"
    ),
    Index("ix_tasks_owner", "owner_position_id", "state"),
    Index("ix_tasks_creator_position", "creator_position_id", "id"),
    Index("ix_tasks_origin_unit", "origin_unit_id", "category"),
)

task_events = Table(
    "task_events",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("task_id", ID, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    # The task version this transition produced (1 for creation): one row per version.
    Column("version", Integer, nullable=False),
    Column("action", String(16), nullable=False),
    Column("from_state", String(16), nullable=True),
    Column("to_state", String(16), nullable=False),
    # NULL for the system (deadline escalation).
    Column("actor_person_id", ID, nullable=True),
    Column("actor_position_id", ID, nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Column("comment", Text, nullable=False),
    # JSON list of attachment digests.
    Column("attachments", Text, nullable=False),
    # JSON object: owner changes, escalation rule, deadlines.
    Column("data", Text, nullable=False),
    UniqueConstraint("task_id", "version", name="uq_task_events_task_version"),
)

task_timers = Table(
    "task_timers",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("task_id", ID, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    # accept | resolve (escalate when overdue) | ding (out-of-band call after an escalation)
    Column("kind", String(8), nullable=False),
    # The task version the timer was set for: it fires only if the task is still at it.
    Column("task_version", Integer, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    # A claim is a lease (as in notice_ding_steps): exclusive until ``claimed_until``.
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False),
    # Set in the transaction of the timer's effect (fenced by ``claimed_by``), or when superseded.
    Column("done_at", UTCDateTime, nullable=True),
    Column("outcome", String(16), nullable=True),
    Column("last_error", Text, nullable=True),
    CheckConstraint("kind IN ('accept', 'resolve', 'ding')", name="kind_valid"),
    Index("ix_task_timers_due", "done_at", "due_at"),
    Index("ix_task_timers_task", "task_id"),
)
