"""Tasks: task_categories, reports, tasks, task_events, task_timers, and the domain-event outbox (issue 6)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.columns import ID, TS, drop_table, fk, id_column, pk

revision = "0005_tasks"
down_revision = "0004_conversations"


def upgrade() -> None:
    op.create_table(
        "task_categories",
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        pk("task_categories", "key"),
    )
    op.create_table(
        "reports",
        id_column(),
        sa.Column("reporter_person_id", ID, nullable=False),
        sa.Column("reporter_position_id", ID, nullable=False),
        sa.Column("grid_unit_id", ID, nullable=False),
        sa.Column("client_msg_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("lat_e6", sa.Integer(), nullable=False),
        sa.Column("lon_e6", sa.Integer(), nullable=False),
        sa.Column("beyond_capacity", sa.Boolean(), nullable=False),
        sa.Column("photos", sa.Text(), nullable=False),
        sa.Column("task_id", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        fk("reports", "reporter_person_id", "persons"),
        pk("reports"),
        sa.UniqueConstraint("reporter_person_id", "client_msg_id", name="uq_reports_reporter_client_msg"),
    )
    op.create_index("ix_reports_grid", "reports", ["grid_unit_id", "id"])
    op.create_table(
        "tasks",
        id_column(),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("owner_position_id", ID, nullable=False),
        sa.Column("owner_unit_id", ID, nullable=False),
        sa.Column("pool", sa.Text(), nullable=False),
        sa.Column("origin_unit_id", ID, nullable=False),
        sa.Column("creator_person_id", ID, nullable=False),
        sa.Column("creator_position_id", ID, nullable=False),
        sa.Column("watchers", sa.Text(), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("source_id", ID, nullable=True),
        sa.Column("client_msg_id", sa.String(64), nullable=False),
        sa.Column("escalation_level", sa.SmallInteger(), nullable=False),
        sa.Column("accept_due_at", TS, nullable=True),
        sa.Column("resolve_due_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("accepted_at", TS, nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.CheckConstraint("source IN ('direct', 'notice', 'report')", name="ck_tasks_source_valid"),
        pk("tasks"),
        sa.UniqueConstraint(
            "creator_person_id", "client_msg_id", "owner_position_id", name="uq_tasks_creator_client_msg_owner"
        ),
    )
    op.create_index("ix_tasks_owner", "tasks", ["owner_position_id", "state"])
    op.create_index("ix_tasks_creator_position", "tasks", ["creator_position_id", "id"])
    op.create_index("ix_tasks_origin_unit", "tasks", ["origin_unit_id", "category"])
    op.create_table(
        "task_events",
        id_column(),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("actor_person_id", ID, nullable=True),
        sa.Column("actor_position_id", ID, nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("attachments", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        fk("task_events", "task_id", "tasks", ondelete="CASCADE"),
        pk("task_events"),
        sa.UniqueConstraint("task_id", "version", name="uq_task_events_task_version"),
    )
    op.create_table(
        "task_timers",
        id_column(),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("task_version", sa.Integer(), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("done_at", TS, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('accept', 'resolve', 'ding')", name="ck_task_timers_kind_valid"),
        fk("task_timers", "task_id", "tasks", ondelete="CASCADE"),
        pk("task_timers"),
    )
    op.create_index("ix_task_timers_due", "task_timers", ["done_at", "due_at"])
    op.create_index("ix_task_timers_task", "task_timers", ["task_id"])
    op.create_table(
        "outbox_events",
        id_column(),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("aggregate", sa.String(16), nullable=False),
        sa.Column("aggregate_id", ID, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("published_at", TS, nullable=True),
        pk("outbox_events"),
        sa.UniqueConstraint("event_id", name="uq_outbox_events_event_id"),
    )
    op.create_index("ix_outbox_events_unpublished", "outbox_events", ["published_at", "id"])
    op.create_index("ix_outbox_events_aggregate", "outbox_events", ["aggregate", "aggregate_id"])


def downgrade() -> None:
    drop_table("outbox_events", "ix_outbox_events_aggregate", "ix_outbox_events_unpublished")
    drop_table("task_timers", "ix_task_timers_task", "ix_task_timers_due")
    drop_table("task_events")
    drop_table("tasks", "ix_tasks_origin_unit", "ix_tasks_creator_position", "ix_tasks_owner")
    drop_table("reports", "ix_reports_grid")
    drop_table("task_categories")
