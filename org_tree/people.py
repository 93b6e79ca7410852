"""Persons: the people who hold positions and log in.

Passwords arrive here already hashed: hashing is the shell's concern (it
picks the algorithm and its cost), storing and finding people is the domain's.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from kernel.audit import AuditEntry, record
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.errors import BadRequest, Conflict, ErrorCode, NotFound, Unauthorized
from kernel.schema import activation_codes, auth_sessions, persons
from kernel.text import check_text, normalize_name

logger = logging.getLogger(__name__)

__all__ = ["Person", "PersonDirectory", "code_digest", "normalize_login"]


def code_digest(code: str) -> str:
    """What is stored of an activation code (it is shown once, never kept)."""
    return hashlib.sha256(code.strip().encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    login: str | None
    name: str
    disabled: bool
    created_at: datetime
    password_hash: str | None = None

    def public(self) -> dict[str, object]:
        """What any colleague may see of a person."""
        return {"id": self.id, "name": self.name}


def normalize_login(login: str) -> str:
    login = normalize_name(check_text(login, field="login", max_chars=64)).lower()
    if not login or any(c.isspace() for c in login):
        raise BadRequest("login must be one word", code=ErrorCode.INVALID_TEXT, data={"field": "login"})
    return login


class PersonDirectory:
    """Create and look up persons."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(
        self, name: str, *, login: str | None = None, password_hash: str | None = None, audit_via: str | None = None
    ) -> Person:
        """Create a person; a duplicate login raises ``Conflict``.

        ``audit_via`` (e.g. ``"cli"``): also record ``person.created`` in the same transaction,
        as bulk provisioning does (docs/admin.md).
        """
        clean_name = normalize_name(check_text(name, field="name", max_chars=100))
        clean_login = normalize_login(login) if login is not None else None
        now = self._clock.now()
        try:
            async with self._db.write() as conn:
                res = await conn.execute(
                    insert(persons)
                    .values(
                        login=clean_login, name=clean_name, password_hash=password_hash, disabled=False, created_at=now
                    )
                    .returning(persons.c.id)
                )
                pid = int(res.scalar_one())
                if audit_via is not None:
                    detail: dict[str, Any] = {"login": clean_login, "person_id": pid, "positions": [], "via": audit_via}
                    await record(conn, AuditEntry("person.created", None, detail=detail), now)
        except IntegrityError as exc:
            raise Conflict(f"login {clean_login!r} is taken", code=ErrorCode.ALREADY_EXISTS) from exc
        return Person(pid, clean_login, clean_name, False, now, password_hash)

    async def get(self, person_id: int) -> Person:
        async with self._db.read() as conn:
            row = (await conn.execute(select(persons).where(persons.c.id == person_id))).first()
        if row is None:
            raise NotFound("no such person", data={"person_id": person_id})
        return _person(row)

    async def by_login(self, login: str) -> Person | None:
        try:
            key = normalize_login(login)
        except BadRequest:
            return None
        async with self._db.read() as conn:
            row = (await conn.execute(select(persons).where(persons.c.login == key))).first()
        return _person(row) if row is not None else None

    async def existing(self, person_ids: set[int]) -> set[int]:
        """The subset of ``person_ids`` that exist and are not disabled."""
        if not person_ids:
            return set()
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(persons.c.id).where(persons.c.id.in_(person_ids), persons.c.disabled.is_(False))
            )
            return {int(r[0]) for r in rows}

    async def set_password_hash(self, person_id: int, password_hash: str) -> None:
        async with self._db.write() as conn:
            res = await conn.execute(
                update(persons).where(persons.c.id == person_id).values(password_hash=password_hash)
            )
        if res.rowcount == 0:
            raise NotFound("no such person", data={"person_id": person_id})

    async def set_disabled(self, person_id: int, disabled: bool) -> None:
        async with self._db.write() as conn:
            res = await conn.execute(update(persons).where(persons.c.id == person_id).values(disabled=disabled))
        if res.rowcount == 0:
            raise NotFound("no such person", data={"person_id": person_id})

    async def check_activation(self, login: str, code: str) -> Person:
        """The person a valid, unused, unexpired activation code belongs to.

        Raises:
            Unauthorized: ``invalid_grant`` alike for an unknown login, a disabled account, a wrong,
                used or expired code.
        """
        bad = partial(Unauthorized, "login or activation code is not valid", code=ErrorCode.INVALID_GRANT)
        person = await self.by_login(login)
        if person is None or person.disabled:  # a disabled account is refused as at sign-in
            raise bad()
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(activation_codes).where(activation_codes.c.person_id == person.id))
            ).first()
        if row is None or row.used_at is not None or row.expires_at <= self._clock.now():
            raise bad()
        if not hmac.compare_digest(str(row.code_hash), code_digest(code)):
            raise bad()
        return person

    async def activate(self, person_id: int, code: str, password_hash: str, audit: AuditEntry) -> list[str]:
        """Use the code once and set the password, ending every session the person had, with its audit
        entry (``sessions_ended``), in one transaction; returns the ended sessions' ids.

        Why end them: a code for someone who already signed in is a reset (``zzd person code``: a
        forgotten password, a lost or stolen phone), and the old password's sessions went on working —
        the lost phone stayed signed in after its owner had set a new password. On a first activation
        there is none to end.
        """
        now = self._clock.now()
        async with self._db.write() as conn:
            res = await conn.execute(
                update(activation_codes)
                .where(
                    activation_codes.c.person_id == person_id,
                    activation_codes.c.code_hash == code_digest(code),
                    activation_codes.c.used_at.is_(None),
                    activation_codes.c.expires_at > now,
                )
                .values(used_at=now)
            )
            if res.rowcount != 1:  # a concurrent activation used it first
                raise Unauthorized("login or activation code is not valid", code=ErrorCode.INVALID_GRANT)
            await conn.execute(update(persons).where(persons.c.id == person_id).values(password_hash=password_hash))
            live = auth_sessions.c.person_id == person_id, auth_sessions.c.revoked_at.is_(None)
            ended = [str(sid) for (sid,) in await conn.execute(select(auth_sessions.c.id).where(*live))]
            if ended:
                await conn.execute(update(auth_sessions).where(*live).values(revoked_at=now))
            await record(conn, replace(audit, detail={**audit.detail, "sessions_ended": len(ended)}), now)
        return ended

    async def issue_code(self, person_id: int, valid: timedelta) -> tuple[str, datetime]:
        """A fresh one-time activation code for the person (replacing any earlier one); shown once."""
        now = self._clock.now()
        code = secrets.token_urlsafe(12)
        async with self._db.write() as conn:
            await conn.execute(delete(activation_codes).where(activation_codes.c.person_id == person_id))
            await conn.execute(
                insert(activation_codes).values(
                    person_id=person_id, code_hash=code_digest(code), created_at=now, expires_at=now + valid
                )
            )
            await record(conn, AuditEntry("person.code_issued", None, detail={"person_id": person_id}), now)
        return code, now + valid

    async def count(self) -> int:
        async with self._db.read() as conn:
            return int((await conn.execute(select(func.count()).select_from(persons))).scalar_one())


def _person(row: object) -> Person:
    m = row._mapping  # type: ignore[attr-defined]
    return Person(
        id=int(m["id"]),
        login=m["login"],
        name=m["name"],
        disabled=bool(m["disabled"]),
        created_at=m["created_at"],
        password_hash=m["password_hash"],
    )
