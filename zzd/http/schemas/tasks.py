"""Answers of ``/api/v1/tasks`` and ``/api/v1/reports``: tasks, history, categories, statistics, reports."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from messaging.shapes import Source, TaskActor, TaskChanged, TaskState, TaskTransition, TaskView
from zzd.http.contract import WireModel
from zzd.http.schemas.common import UnitRef

__all__ = [
    "CategoryList",
    "CategoryView",
    "ReportView",
    "Source",
    "TaskActor",
    "TaskChanged",
    "TaskDetail",
    "TaskList",
    "TaskState",
    "TaskStats",
    "TaskTransition",
    "TaskView",
]


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
