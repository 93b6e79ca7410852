"""Who is calling: a signed-in person (their claims), or as the org tree sees them (positions, admin grants)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

from org_tree.jurisdiction import Actor
from zzd.auth.tokens import AccessClaims
from zzd.http.common import authenticate, services_of

if TYPE_CHECKING:
    from zzd.services import Services

__all__ = ["current_actor", "current_person"]


async def current_person(request: Request) -> tuple[Services, AccessClaims]:
    """Authenticate the request: the services and the signed-in person's claims (session checked active)."""
    return services_of(request), await authenticate(request)


async def current_actor(request: Request) -> tuple[Services, Actor]:
    """Authenticate the request and load the caller's current positions and admin grants."""
    s, claims = await current_person(request)
    return s, await s.org.actor(claims.person_id)
