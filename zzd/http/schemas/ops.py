"""Answers of the operational endpoints (health, readiness)."""

from __future__ import annotations

from typing import Literal

from zzd.http.contract import WireModel

__all__ = ["Health", "Ready"]


class Health(WireModel):
    status: Literal["ok"]


class Ready(WireModel):
    status: Literal["ready", "unavailable"]
    #: database / broker → "ok" or "unavailable: <error type>".
    checks: dict[str, str]
    node: str
    connections: int
