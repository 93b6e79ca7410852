"""Shapes several domains share: actors, unit references, simple acknowledgements."""

from __future__ import annotations

from datetime import datetime

from zzd.http.contract import WireModel

__all__ = ["Actor", "Count", "Revoked", "Status", "UnitRef"]


class Actor(WireModel):
    """Who did something: the person, and the position they acted as."""

    person_id: int
    position_id: int | None


class UnitRef(WireModel):
    id: int
    code: str
    name: str


class Revoked(WireModel):
    revoked: bool


class Status(WireModel):
    status: str


class Count(WireModel):
    n: int


class Recalled(WireModel):
    recalled_at: datetime
