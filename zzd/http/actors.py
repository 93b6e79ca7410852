"""Who is calling, as the org tree sees them (persons, their positions, operator rights)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

from org_tree.jurisdiction import Actor
from zzd.http.common import authenticate, services_of

if TYPE_CHECKING:
    from zzd.services import Services

__all__ = ["current_actor"]


async def current_actor(request: Request) -> tuple[Services, Actor]:
    """Authenticate the request and load the caller's current positions."""
    s = services_of(request)
    claims = await authenticate(request)
    is_admin = False
    if s.settings.admin_logins:
        person = await s.persons.get(claims.person_id)
        is_admin = person.login is not None and person.login in s.settings.admin_logins
    return s, await s.org.actor(claims.person_id, is_admin=is_admin)
