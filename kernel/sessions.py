"""Login sessions with rotating, revocable refresh tokens.

Each refresh token may be exchanged once. Presenting a used one means it was
copied, so the whole session is revoked (OAuth 2.0 Security BCP, refresh
token rotation with reuse detection). Access tokens carry the session id, so
revoking a session also ends its live connections.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import bindparam, func, insert, select, update

from kernel.audit import AuditEntry, record
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import driver_fetch
from kernel.errors import ErrorCode, Unauthorized
from kernel.schema import auth_sessions, persons, refresh_tokens
from kernel.text import clean_label

logger = logging.getLogger(__name__)

__all__ = ["ACTIVE_OF", "IssuedSession", "OwnSession", "RefreshReused", "SessionStore", "public_id"]


class RefreshReused(Unauthorized):
    """A spent refresh token came back: the session is revoked (committed), answered as any bad token.

    Carries the session so the shell closes its sockets at once, as a logout does. Before, they were
    left to the safety poll (up to ``ZZD_SAFETY_POLL_INTERVAL``, 5 s), though a reuse means the token
    was stolen and the session's live sockets are the thief's or the victim's.
    """

    def __init__(self, session_id: str) -> None:
        super().__init__("refresh token is not valid", code=ErrorCode.INVALID_GRANT)
        self.session_id = session_id


@dataclass(frozen=True, slots=True)
class IssuedSession:
    session_id: str
    person_id: int
    refresh_token: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def public_id(session_id: str) -> str:
    """The id a session is shown and revoked by (``GET/DELETE /api/v1/auth/sessions``): derived, not the ``sid``.

    Why not the ``sid`` itself: it is what every access token carries and what the processes
    close sockets by, so it stays out of answers a thief holding one of the person's sessions
    could read; a one-way derivative names the session for its owner and is useful for nothing else.
    """
    return hashlib.sha256(b"zzd-session:" + session_id.encode("ascii")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class OwnSession:
    """One of a person's active sessions, as they see it in their list of devices."""

    session_id: str
    created_at: datetime
    last_refreshed_at: datetime
    expires_at: datetime
    #: How the device named itself at sign-in or its last renewal (:func:`kernel.text.clean_label`); None if it did not.
    client_label: str | None = None


#: ``inactive``'s query, built once (its compiled form is cached): the safety poll asks it about
#: every socket's session every few seconds, and coercing 5,000 literals into a fresh ``IN`` each
#: time showed in the poll's profile (py-spy, issue 15).
_ACTIVE_AMONG = (
    select(auth_sessions.c.id)
    .join(persons, persons.c.id == auth_sessions.c.person_id)
    .where(
        auth_sessions.c.id.in_(bindparam("ids", expanding=True)),
        auth_sessions.c.revoked_at.is_(None),
        auth_sessions.c.expires_at > bindparam("now"),
        persons.c.disabled.is_(False),
    )
)

#: ``active_of``'s statement, written once per driver: one array parameter however many hellos wait.
#: ``{ids}`` is the test of the session id against the array, ``{now}`` the time's placeholder. Public
#: because a hello reads it together with the person's stream position (``zzd.gateway.hello_checks``):
#: the rules stay written once, here. Its columns are ``id`` and ``person_id``.
ACTIVE_OF = """SELECT s.id, s.person_id FROM auth_sessions s JOIN persons p ON p.id = s.person_id
WHERE s.id {ids} AND s.revoked_at IS NULL AND s.expires_at > {now} AND NOT p.disabled"""
_PG_ACTIVE_OF = ACTIVE_OF.format(ids="= ANY($1::text[])", now="$2")
_SQLITE_ACTIVE_OF = ACTIVE_OF.format(ids="IN (SELECT value FROM json_each(?))", now="?")


class SessionStore:
    def __init__(self, db: Database, clock: Clock, *, refresh_ttl: timedelta) -> None:
        self._db = db
        self._clock = clock
        self._ttl = refresh_ttl

    async def open(
        self, person_id: int, *, client_label: str | None = None, audit: AuditEntry | None = None
    ) -> IssuedSession:
        """Start a session after a successful login.

        Args:
            client_label: how the device names itself, as given (cleaned here: :func:`clean_label`).
            audit: its sign-in entry, written in the same transaction; the session's public id and
                the label are added to its detail, so that a later sign-out's entry names a session
                an auditor can find signing in.
        """
        now = self._clock.now()
        sid = secrets.token_hex(16)
        token = secrets.token_urlsafe(32)
        label = clean_label(client_label)
        async with self._db.write() as conn:
            await conn.execute(
                insert(auth_sessions).values(
                    id=sid, person_id=person_id, created_at=now, expires_at=now + self._ttl, client_label=label
                )
            )
            await conn.execute(insert(refresh_tokens).values(token_hash=_digest(token), session_id=sid, issued_at=now))
            if audit is not None:
                detail = {**audit.detail, "session": public_id(sid), "client_label": label}
                await record(conn, replace(audit, detail=detail), now)
        return IssuedSession(sid, person_id, token)

    async def rotate(self, refresh_token: str, *, client_label: str | None = None) -> IssuedSession:
        """Exchange a refresh token for a new one in the same session.

        ``client_label`` (cleaned: :func:`clean_label`) replaces the session's label when there is one:
        the app updated, the browser upgraded. A renewal that names nothing keeps the label it had.

        Raises:
            Unauthorized: unknown, expired, revoked or reused token (reuse
                revokes the session as well).
        """
        now = self._clock.now()
        bad = partial(Unauthorized, "refresh token is not valid", code=ErrorCode.INVALID_GRANT)
        if len(refresh_token) > 256:
            raise bad()
        async with self._db.write() as conn:
            row = (
                await conn.execute(
                    select(
                        refresh_tokens.c.session_id,
                        refresh_tokens.c.used_at,
                        auth_sessions.c.person_id,
                        auth_sessions.c.expires_at,
                        auth_sessions.c.revoked_at,
                        persons.c.disabled,
                    )
                    .join(auth_sessions, auth_sessions.c.id == refresh_tokens.c.session_id)
                    .join(persons, persons.c.id == auth_sessions.c.person_id)
                    .where(refresh_tokens.c.token_hash == _digest(refresh_token))
                    .with_for_update()
                )
            ).first()
            if row is None:
                raise bad()
            sid, used_at, person_id, expires_at, revoked_at, disabled = row
            reused = used_at is not None and revoked_at is None
            if reused:
                logger.warning("refresh token reuse detected; revoking session %s", sid)
                await conn.execute(update(auth_sessions).where(auth_sessions.c.id == sid).values(revoked_at=now))
                # Whoever presented the spent token is not known (the thief or the victim): the entry names
                # the session's owner and why it ended, as a sign-out of it would be named.
                reason = {"session": public_id(str(sid)), "reason": "refresh_token_reused"}
                await record(conn, AuditEntry("auth.session_revoked", int(person_id), detail=reason), now)
            if used_at is not None or revoked_at is not None or expires_at <= now or disabled:
                # Commit the revocation (if any) but still refuse.
                pass
            else:
                token = secrets.token_urlsafe(32)
                await conn.execute(
                    update(refresh_tokens)
                    .where(refresh_tokens.c.token_hash == _digest(refresh_token))
                    .values(used_at=now)
                )
                await conn.execute(
                    insert(refresh_tokens).values(token_hash=_digest(token), session_id=sid, issued_at=now)
                )
                label = clean_label(client_label)
                if label is not None:
                    await conn.execute(
                        update(auth_sessions).where(auth_sessions.c.id == sid).values(client_label=label)
                    )
                return IssuedSession(sid, int(person_id), token)
        if reused:  # committed: the caller closes the session's sockets now
            raise RefreshReused(str(sid))
        raise bad()

    async def revoke(self, session_id: str, *, audit: AuditEntry | None = None) -> int:
        """Revoke a session; returns the person id it belonged to (0 if unknown or already revoked).

        ``audit``: its entry (a logout, a remote sign-out), written in the same transaction and only
        when this call ended the session, so the log has one entry per session ended, not per request.
        """
        now = self._clock.now()
        async with self._db.write() as conn:
            row = (
                await conn.execute(
                    update(auth_sessions)
                    .where(auth_sessions.c.id == session_id, auth_sessions.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                    .returning(auth_sessions.c.person_id)
                )
            ).first()
            if row is not None and audit is not None:
                await record(conn, audit, now)
        return int(row[0]) if row else 0

    async def active_sessions(self, person_id: int) -> list[OwnSession]:
        """The person's sessions that still work (not revoked, not expired), newest first.

        ``last_refreshed_at`` is the newest refresh token's issue time (the sign-in's own for a
        session never refreshed): when the device last renewed its tokens, stored already.
        """
        now = self._clock.now()
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(
                    auth_sessions.c.id,
                    auth_sessions.c.created_at,
                    func.max(refresh_tokens.c.issued_at),
                    auth_sessions.c.expires_at,
                    auth_sessions.c.client_label,
                )
                .join(refresh_tokens, refresh_tokens.c.session_id == auth_sessions.c.id)
                .where(
                    auth_sessions.c.person_id == person_id,
                    auth_sessions.c.revoked_at.is_(None),
                    auth_sessions.c.expires_at > now,
                )
                .group_by(
                    auth_sessions.c.id,
                    auth_sessions.c.created_at,
                    auth_sessions.c.expires_at,
                    auth_sessions.c.client_label,
                )
                .order_by(auth_sessions.c.created_at.desc(), auth_sessions.c.id)
            )
            return [
                OwnSession(str(sid), created, refreshed, expires, label)
                for sid, created, refreshed, expires, label in rows
            ]

    async def revoke_own(self, person_id: int, public: str, *, audit: AuditEntry | None = None) -> str | None:
        """Revoke the person's active session shown as ``public``; its ``sid``, or None if they have no such session.

        Only the caller's own sessions that still work can match, so another person's id, an
        unknown one and one already revoked are all None: the caller learns nothing of others.
        ``audit`` as for :meth:`revoke` (nothing is recorded for a None).
        """
        mine = await self.active_sessions(person_id)
        match = next((s.session_id for s in mine if public_id(s.session_id) == public), None)
        if match is None or await self.revoke(match, audit=audit) != person_id:
            return None
        return match

    async def is_active(self, session_id: str, person_id: int) -> bool:
        """True while the session may be used by ``person_id``: theirs, not revoked, not expired, person enabled.

        Why the owner check: a token is trusted for its signature, but a session id
        inside it that belongs to someone else (a signing key misused, a bug) must
        not borrow that session's liveness (issue 10 item 6).
        """
        now = self._clock.now()
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(auth_sessions.c.expires_at, auth_sessions.c.revoked_at, persons.c.disabled)
                    .join(persons, persons.c.id == auth_sessions.c.person_id)
                    .where(auth_sessions.c.id == session_id, auth_sessions.c.person_id == person_id)
                )
            ).first()
        if row is None:
            return False
        expires_at, revoked_at, disabled = row
        return revoked_at is None and expires_at > now and not disabled

    async def active_of(self, claims: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which ``(session_id, person_id)`` pairs :meth:`is_active` would accept, in one query.

        For a burst of hellos: the checks of every hello waiting are one
        statement, not one each; the rules (owner, revocation, expiry, person
        enabled) are :meth:`is_active`'s.
        """
        if not claims:
            return set()
        async with self._db.read() as conn:
            # Straight to the driver: built through SQLAlchemy, the expanding ``IN`` was
            # compiled and cache-keyed again for every batch, and a reconnect storm's
            # batches are small (a few hellos each), so that was most of the check (issue 15).
            driver = (await conn.get_raw_connection()).driver_connection
            ids = sorted({sid for sid, _ in claims})
            rows = await driver_fetch(conn, driver, _PG_ACTIVE_OF, _SQLITE_ACTIVE_OF, ids, self._clock.now())
        active = {(str(sid), int(pid)) for sid, pid in rows}
        return {c for c in claims if c in active}

    async def inactive(self, session_ids: set[str]) -> set[str]:
        """Which of ``session_ids`` may no longer be used (one query; for the safety poll)."""
        if not session_ids:
            return set()
        async with self._db.read() as conn:
            rows = await conn.execute(_ACTIVE_AMONG, {"ids": list(session_ids), "now": self._clock.now()})
            active = {str(r[0]) for r in rows}
        return session_ids - active
