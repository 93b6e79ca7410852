"""Answers of ``/api/v1/tasks`` and ``/api/v1/reports``: tasks, history, categories, statistics, reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from zzd.http.contract import WireModel
from zzd.http.schemas.common import UnitRef

__all__ = ["CategoryList", "CategoryView", "ReportView", "TaskDetail", "TaskList", "TaskStats", "TaskView"]

TaskState = Literal["created", "accepted", "in_progress", "resolved", "verified", "closed", "cancelled"]


class TaskActor(WireModel):
    person_id: int
    position_id: int | None


class Source(WireModel):
    kind: str = Field(description="direct | notice | report")
    id: int | None


class TaskView(WireModel):
    """What every party's event and the API show (the body comes with GET /api/v1/tasks/{task_id})."""

    task_id: int
    category: str
    title: str
    state: TaskState
    version: int = Field(description="send it back with the next action (409 stale_version otherwise)")
    owner_position_id: int
    owner_unit_id: int
    pool: list[int] = Field(description="positions offered a shared task (any of them may accept)")
    origin_unit_id: int
    creator: TaskActor
    source: Source
    escalation_level: int
    accept_due_at: datetime | None
    resolve_due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    accepted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None


class TaskTransition(WireModel):
    """One transition of a task."""

    version: int
    action: str
    from_state: TaskState | None
    to_state: TaskState
    actor: TaskActor | None = Field(description="null: the server (timers, escalation)")
    at: datetime
    comment: str | None
    attachments: list[Any]
    data: dict[str, Any]


class TaskEvent(TaskTransition):
    event_id: int


class TaskDetail(TaskView):
    body: str
    history: list[TaskEvent] = Field(description="oldest first")


class TaskList(WireModel):
    tasks: list[TaskView]


class CategoryView(WireModel):
    key: str
    name: str
    accept_within: int = Field(description="seconds to accept before escalation")
    resolve_within: int = Field(description="seconds to resolve after accepting")
    escalation: str
    ding: bool = Field(description="urgent (DING) delivery to the owner")
    route_role: str | None
    route_level: str | None
    max_escalations: int


class CategoryList(WireModel):
    categories: list[CategoryView]


class Durations(WireModel):
    n: int
    p50_s: float | None
    p90_s: float | None


class StatBlock(WireModel):
    tasks: int
    closed: int
    accept: Durations
    resolve: Durations
    close: Durations


class ChildStats(StatBlock):
    unit: UnitRef


class TaskStats(WireModel):
    unit: UnitRef
    category: str | None
    total: StatBlock
    by_category: dict[str, StatBlock]
    by_child: list[ChildStats]


class Location(WireModel):
    lat: float
    lon: float


class ReportView(WireModel):
    report_id: int
    reporter: TaskActor
    grid_unit_id: int
    category: str
    text: str
    location: Location
    beyond_capacity: bool
    photos: list[str] = Field(description="sha256 digests (GET /api/v1/uploads/{digest})")
    task_id: int | None
    created_at: datetime


class TaskChanged(WireModel):
    """``task.created`` / ``task.updated`` to everyone involved (and the outbox's ``task.*``)."""

    task: TaskView
    event: TaskTransition = Field(description="the transition, as in the task's history")
    urgent: bool | None = Field(None, description="true on a DING escalation")
