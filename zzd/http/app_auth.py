"""Who is calling the bot API: an app, by its app token (docs/apps.md).

Why the secret is checked on every request: revoking a secret, rotating it
out or disabling the app must stop the app at once, not when its token
expires. The token names the secret it was issued against; the registry
answers whether that secret and the app are still live.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

from apps.model import AppPrincipal, Scope, require_scope
from kernel.errors import Unauthorized
from zzd.http.common import bearer_token, services_of

if TYPE_CHECKING:
    from zzd.services import Services

__all__ = ["current_app"]


async def current_app(request: Request, *scopes: Scope) -> tuple[Services, AppPrincipal]:
    """Authenticate an app token, count the request against the app's limit, require one of ``scopes``.

    Raises:
        Unauthorized: no, a bad or a person's token; a revoked or rotated-out secret; a disabled app.
        RateLimited: the app's requests per minute are spent (429 with ``Retry-After``).
        Forbidden: ``insufficient_scope``, naming the (first) scope needed.
    """
    s = services_of(request)
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized("missing bearer token")
    claims = s.tokens.verify_app(token)
    principal = await s.apps.principal(claims.app_id, claims.secret_id)
    await s.app_rate.hit(principal.app_id, principal.app.rate_per_minute)
    if scopes and not any(sc.value in principal.app.scopes for sc in scopes):
        require_scope(principal, scopes[0])
    return s, principal
