"""``SessionStore.active_of`` (the hellos' batched session check) says what ``is_active`` says, on both backends.

The batched check is a statement written per driver (issue 15), so its rules
(owner, revocation, expiry, person enabled) are checked here against the
one-session query pair by pair, including the stored-time comparison on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kernel.clock import FakeClock
from kernel.db.database import Database
from kernel.sessions import SessionStore
from org_tree.people import PersonDirectory


async def test_active_of_agrees_with_is_active_for_every_rule(db: Database) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=123_456))
    people = PersonDirectory(db, clock)
    sessions = SessionStore(db, clock, refresh_ttl=timedelta(hours=1))
    ann, bob, cat = [(await people.create(n)).id for n in ("甲", "乙", "丙")]
    old = (await sessions.open(ann)).session_id
    clock.advance(30 * 60)
    good = (await sessions.open(ann)).session_id
    revoked = (await sessions.open(ann)).session_id
    await sessions.revoke(revoked)
    disabled = (await sessions.open(cat)).session_id
    await people.set_disabled(cat, True)
    clock.advance(30 * 60 + 1)  # ``old`` expired a second ago, ``good`` has half an hour left
    claims = [
        (old, ann),
        (good, ann),
        (good, bob),  # someone else's session id
        (revoked, ann),
        (disabled, cat),
        ("0" * 32, ann),  # no such session
        (good, ann),  # the same hello twice in one batch
    ]
    active = await sessions.active_of(claims)
    assert active == {(good, ann)}
    assert [c in active for c in claims] == [await sessions.is_active(*c) for c in claims]
    assert await sessions.active_of([]) == set()
    # At the expiry instant itself the session is over (``expires_at > now``), as for ``is_active``.
    clock.advance(30 * 60 - 2)
    assert await sessions.active_of([(good, ann)]) == {(good, ann)}
    clock.advance(1)
    assert await sessions.active_of([(good, ann)]) == set()
    assert not await sessions.is_active(good, ann)
