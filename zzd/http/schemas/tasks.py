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
    "TasksMade",
]


class TaskEvent(TaskTransition):
    #: the history row's id
    event_id: int


class TaskDetail(TaskView):
    #: the task's text
    body: str
    history: list[TaskEvent] = Field(description="oldest first")


class TaskList(WireModel):
    tasks: list[TaskView]


class TasksMade(TaskList):
    """The tasks a create made (201), or those a create with this ``client_msg_id`` made before (200)."""

    #: true: a retry with the same client_msg_id (or Idempotency-Key); nothing new was stored
    duplicate: bool = False


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
    #: the report's id
    report_id: int
    #: who filed it, as which grid position
    reporter: TaskActor
    #: the reporting position's grid
    grid_unit_id: int
    #: its category key
    category: str
    #: what the reporter wrote
    text: str
    #: where (WGS-84 degrees)
    location: Location
    #: true: the grid asked to route it one level up at once
    beyond_capacity: bool
    photos: list[str] = Field(description="sha256 digests (GET /api/v1/uploads/{digest})")
    #: the task it became (null: none)
    task_id: int | None
    #: when it was filed (UTC)
    created_at: datetime
