"""Who is calling, as the org tree sees them (persons, their positions, admin grants)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

from org_tree.jurisdiction import Actor
from zzd.http.common import authenticate, services_of

if TYPE_CHECKING:
    from zzd.services import Services

__all__ = ["current_actor"]


async def current_actor(request: Request) -> tuple[Services, Actor]:
    """Authenticate the request and load the caller's current positions and admin grants."""
    s = services_of(request)
    claims = await authenticate(request)
    return s, await s.org.actor(claims.person_id)
