"""Answers of ``/api/v1/org`` and ``/api/v1/me/positions`` (units, roles, positions, assignments, search)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from messaging.shapes import HeldPosition as Position
from zzd.http.contract import WireModel
from zzd.http.schemas.admin import GrantView

__all__ = [
    "AssignmentList",
    "AssignmentView",
    "Children",
    "DirectoryPage",
    "EditPreview",
    "Handed",
    "Merged",
    "PersonCard",
    "PersonView",
    "PositionRetired",
    "MyPositions",
    "OrgStats",
    "PositionView",
    "Preview",
    "Resolved",
    "RoleList",
    "RoleView",
    "UnitRetired",
    "UnitView",
]

LevelName = Literal["province", "city", "county", "township", "village", "grid"]


class UnitView(WireModel):
    id: int
    code: str
    name: str
    level: LevelName
    parent_id: int | None
    path: list[str] = Field(description="names from the province down to this unit")
    children: int = Field(description="number of child units")
    position_ids: list[int]


class Children(WireModel):
    units: list[UnitView]
    offset: int


class RoleView(WireModel):
    id: int
    key: str
    name: str
    levels: list[int] = Field(description="levels the role exists at (1 province … 6 grid)")
    jurisdiction: Literal["subtree", "chain", "unit", "none"]
    is_head: bool
    pool: bool


class RoleList(WireModel):
    roles: list[RoleView]


class PositionView(Position):
    """A position, as every answer shows it and the ``positions.changed`` event lists one's own."""


class AssignmentView(WireModel):
    id: int
    person_id: int
    position_id: int
    kind: Literal["primary", "deputy", "acting"]
    start_at: datetime
    end_at: datetime | None


class AssignmentList(WireModel):
    assignments: list[AssignmentView] = Field(description="oldest first")


class Handed(AssignmentView):
    previous_holders: list[int]
    unread_notices_moved: int = Field(description="unread notice receipts that passed to the new holder")


class DirectoryHolder(WireModel):
    #: the person's id
    person_id: int
    #: their name
    name: str
    phone: str | None = Field(
        description="only for administrators (assignments or audit) over every unit where the person holds a position"
    )
    kind: Literal["primary", "deputy", "acting"] = Field(description="how they hold the position")


class DirectoryFallback(WireModel):
    reason: Literal["deputy", "acting", "unit_head", "superior", "unfilled"]
    via_position_id: int | None = Field(description="the position whose holders stand in")
    holders: list[str] = Field(description="names of who receives instead")


class PlacedPosition(WireModel):
    #: the position's id
    position_id: int
    #: its role's name
    role: str
    #: its role's key
    role_key: str
    #: its unit's id
    unit_id: int
    #: its unit's code (selectors name units by it)
    unit_code: str
    #: unit names from the province down
    unit_path: list[str]
    title: str | None = Field(default=None, description="the title it was created with (副书记), else null")


class DirectoryHit(PlacedPosition):
    holders: list[str] = Field(description="names of the current primary holders (empty: vacant)")
    #: the holders with their ids: primary holders first, then deputies and acting holders
    holder_details: list[DirectoryHolder]
    #: true: no primary holder
    vacant: bool
    fallback: DirectoryFallback | None = Field(description="for a vacant position: who receives instead")


class HeldPosition(PlacedPosition):
    kind: Literal["primary", "deputy", "acting"] = Field(description="how the person holds it")


class PersonCard(WireModel):
    """One person as the directory shows them (``GET /api/v1/org/persons/{person_id}``)."""

    id: int
    name: str
    phone: str | None = Field(
        description="only for administrators (assignments or audit) over every unit of their positions and grants"
    )
    positions: list[HeldPosition] = Field(description="the positions they hold now, higher levels first")


class DirectoryPage(WireModel):
    total: int = Field(description="positions matching every term (exact unless truncated)")
    offset: int
    hits: list[DirectoryHit] = Field(description="in rank order (docs/directory.md)")
    truncated: bool = Field(description="a term matched more units or persons than one query expands")


class UnitCount(WireModel):
    unit_id: int
    code: str
    name: str
    positions: int
    persons: int


class Fallback(WireModel):
    """A vacant addressed position and who stood in (``via_position_id`` null: nobody)."""

    position_id: int
    reason: Literal["deputy", "acting", "unit_head", "superior", "unfilled"]
    via_position_id: int | None


class Preview(WireModel):
    version: int = Field(description="org tree version the counts were taken at")
    positions: int = Field(description="addressed positions, vacant ones included")
    persons: int = Field(description="distinct people who would receive it (holders, and those standing in)")
    parent_unit_id: int | None = Field(description="the unit whose children by_child lists")
    by_child: list[UnitCount] = Field(
        description="the parent unit itself first when it is addressed directly, then each child unit with "
        "addressed positions"
    )
    by_level: dict[str, Annotated[list[int], Field(min_length=2, max_length=2)]] = Field(
        description="level name → [positions, persons]"
    )
    fallbacks: list[Fallback] = Field(
        description="every vacant addressed position, the first 100 listed: who stands in for it (reason deputy, "
        "acting, unit_head or superior) or nobody (reason unfilled); fallback_count + unfilled_count is how many "
        "there are"
    )
    fallback_count: int = Field(description="vacant positions someone stands in for (reason other than unfilled)")
    unfilled_count: int = Field(description="vacant positions nobody receives for (reason unfilled): no receipt")


class Receiver(WireModel):
    person_id: int
    via_positions: list[int]


class Resolved(WireModel):
    version: int
    positions: int
    persons: int
    receivers: list[Receiver] = Field(description="one page, ordered by person id")
    fallbacks: list[Fallback]
    offset: int


class MyPositions(WireModel):
    person_id: int
    positions: list[PositionView]
    grants: list[GrantView]


class OrgStats(WireModel):
    units: dict[str, int] = Field(description="level name → number of units")
    positions: int
    assignments: int
    persons: int


class UnitBrief(WireModel):
    id: int
    code: str
    name: str
    path: list[str]


class EditPreview(WireModel):
    """What a structural edit would touch (``POST /api/v1/org/units/{ref}/preview``)."""

    action: Literal["move", "merge", "retire"]
    version: int = Field(description="org version the preview was computed at")
    unit: UnitBrief
    target: UnitBrief | None = Field(description="the new parent (move) or the unit merged into (merge)")
    units: int = Field(description="units that move or retire (the subtree; 1 for a merge)")
    children: int = Field(description="child units of the unit")
    positions: int = Field(description="positions that move or retire")
    holders: int = Field(description="distinct persons holding them (primary, deputy or acting)")
    vacant: int
    position_ids: list[int] = Field(description="the first 100 of them")
    open_tasks: int = Field(0, description="open tasks owned by those positions")
    unit_groups: int = Field(0, description="unit groups whose members change")
    position_threads: int = Field(0, description="position threads and groups with one of those positions")
    without_successor: list[int] = Field(
        default_factory=list, description="retire: positions whose open work has no successor by rule (first 100)"
    )


class UnitRetired(WireModel):
    unit_id: int
    units: int = Field(description="units retired (the subtree)")
    positions: list[int] = Field(description="positions retired with them")
    successors: dict[str, int | None] = Field(description="retired position id → the position its open work went to")


class Merged(WireModel):
    unit_id: int
    into_id: int
    children_moved: list[int]
    positions_moved: list[int]


class PositionRetired(WireModel):
    position_id: int
    successor: int | None = Field(description="the position its open tasks went to")
    holders_ended: list[int] = Field(description="persons whose assignments ended")


class PersonView(WireModel):
    id: int
    name: str
    phone: str | None
    disabled: bool = Field(description="a disabled person cannot sign in; their sessions ended when disabled")
    sessions_ended: int = Field(description="sessions this change ended (disabling ends them all)")
