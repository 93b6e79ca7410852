"""Short-lived JWT access tokens, verified strictly (docs/reliability.md S20).

One algorithm (HS256), every registered claim required, exact issuer and
audience, key ids looked up in a static table (rotation: the first key signs,
all configured keys verify), header fields that fetch keys refused, and a
size cap checked before any decoding.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import jwt

from kernel.clock import Clock
from kernel.errors import ErrorCode, Unauthorized

logger = logging.getLogger(__name__)

__all__ = ["AccessClaims", "AppClaims", "TokenService"]

ALGORITHM = "HS256"
MAX_TOKEN_BYTES = 8 * 1024
_REQUIRED = ["exp", "iat", "nbf", "sub", "iss", "aud", "jti"]
_FORBIDDEN_HEADERS = {"jku", "jwk", "x5u", "x5c", "crit"}

_PYJWT = tuple(int(x) for x in jwt.__version__.split(".")[:2])
assert _PYJWT >= (2, 14), "PyJWT >= 2.14 required (CVE-2026-48526, CVE-2026-102269)"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    person_id: int
    session_id: str
    expires_at: float
    jti: str


@dataclass(frozen=True, slots=True)
class AppClaims:
    """An app token's claims: the app and the secret it was issued against (revocation checks it)."""

    app_id: int
    secret_id: int
    expires_at: float


class TokenService:
    """Person tokens (audience ``audience``) and app tokens (audience ``audience:apps``).

    Why two audiences with one key set: a token for one kind of caller must
    never pass as the other. A person endpoint checks the person audience
    exactly, an app endpoint the app audience, so neither accepts the other's
    token even though both are signed alike.
    """

    def __init__(
        self,
        keys: dict[str, bytes],
        *,
        issuer: str,
        audience: str,
        ttl: timedelta,
        leeway: int,
        clock: Clock,
    ) -> None:
        if not keys:
            raise ValueError("at least one signing key is required")
        self._keys = dict(keys)
        self._kid = next(iter(keys))
        self._issuer = issuer
        self._audience = audience
        self._app_audience = f"{audience}:apps"
        self._ttl = ttl
        self._leeway = leeway
        self._clock = clock

    @property
    def ttl_seconds(self) -> int:
        return int(self._ttl.total_seconds())

    def issue(self, person_id: int, session_id: str) -> str:
        now = self._clock.now()
        claims = {
            "sub": str(person_id),
            "sid": session_id,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": now + self._ttl,
            "jti": secrets.token_hex(12),
        }
        return jwt.encode(claims, self._keys[self._kid], algorithm=ALGORITHM, headers={"kid": self._kid})

    def issue_app(self, app_id: int, secret_id: int, ttl: timedelta) -> str:
        """A short-lived app token (OAuth2 client credentials); ``sub`` is ``app:<id>``, never a person id."""
        now = self._clock.now()
        claims = {
            "sub": f"app:{app_id}",
            "cred": secret_id,
            "iss": self._issuer,
            "aud": self._app_audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_hex(12),
        }
        return jwt.encode(claims, self._keys[self._kid], algorithm=ALGORITHM, headers={"kid": self._kid})

    def verify_app(self, token: object) -> AppClaims:
        """Check an app token (person tokens are refused: wrong audience)."""
        claims, exp = self._decode(token, self._app_audience)
        sub, cred = claims.get("sub"), claims.get("cred")
        if not isinstance(sub, str) or not sub.startswith("app:") or not sub[4:].isdigit():
            raise Unauthorized("invalid app token")
        if not isinstance(cred, int) or isinstance(cred, bool):
            raise Unauthorized("invalid app token")
        return AppClaims(int(sub[4:]), cred, exp)

    def verify(self, token: object) -> AccessClaims:
        """Check a presented access token.

        Raises:
            Unauthorized: with ``token_expired`` for an expired token (the client
                should refresh), ``unauthorized`` for anything else.
        """
        claims, exp = self._decode(token, self._audience)
        bad = partial(Unauthorized, "invalid access token")
        sub, sid = claims.get("sub"), claims.get("sid")
        if not isinstance(sub, str) or not sub.isdigit() or not isinstance(sid, str) or not sid:
            raise bad()
        return AccessClaims(int(sub), sid, exp, str(claims["jti"]))

    def _decode(self, token: object, audience: str) -> tuple[dict[str, object], float]:
        bad = partial(Unauthorized, "invalid access token")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
            raise bad()
        if len(self._keys) == 1:
            # One key: verify with it and read the header from the same parse. Why: reading the
            # header first, only to pick the key, parsed and decoded the token twice — a quarter
            # of PyJWT's time, paid by every hello and every REST request (issue 15).
            key, header = self._keys[self._kid], None
        else:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError as exc:
                raise bad() from exc
            kid = header.get("kid")
            if not isinstance(kid, str) or kid not in self._keys:
                raise bad()
            key = self._keys[kid]
        try:
            decoded = jwt.decode_complete(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=self._issuer,
                # Times are checked below against the injected clock, so tests
                # and servers agree on "now"; presence is still required here.
                options={
                    "require": _REQUIRED,
                    "enforce_minimum_key_length": True,
                    "strict_aud": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise bad() from exc
        header = decoded["header"] if header is None else header
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or kid not in self._keys:
            raise bad()
        if _FORBIDDEN_HEADERS & header.keys():
            raise bad()
        claims: dict[str, object] = decoded["payload"]
        times: list[float] = []
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise bad()
            times.append(float(value))
        exp, iat, nbf = times
        now = self._clock.now().timestamp()
        if iat > now + self._leeway or nbf > now + self._leeway:
            raise bad()
        if exp + self._leeway < now:
            raise Unauthorized("access token expired", code=ErrorCode.TOKEN_EXPIRED)
        return claims, exp
