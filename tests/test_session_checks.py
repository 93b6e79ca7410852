"""The batched session checks say what ``is_active`` says, on both backends.

``SessionStore.active_of`` (REST's batched check) and ``HelloChecks.hello``
(a hello's session check and stream position in one statement) are
statements written per driver (issue 15), so their rules (owner, revocation,
expiry, person enabled) are checked here against the one-session query pair
by pair, including the stored-time comparison on SQLite. A hello also
creates a first connection's stream, and only for a good session.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from kernel.clock import FakeClock
from kernel.db.database import Database
from kernel.sessions import SessionStore
from messaging.events import EventLog, StreamState
from org_tree.people import PersonDirectory
from zzd.gateway.hello_checks import HelloChecks


async def test_active_of_and_the_hello_agree_with_is_active_for_every_rule(db: Database) -> None:
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
    # A hello's one read, every claim in one batch: the same answers; ann's first connection
    # creates her stream (once, for both hellos), bob's and cat's refused ones create none.
    events = EventLog(db)
    checks = HelloChecks(db, clock, sessions, events)
    try:
        states = await asyncio.gather(*(checks.hello(*c) for c in claims))
        assert [st is not None for st in states] == [c in active for c in claims]
        assert states[1] == states[-1] == await events.state(ann) == StreamState(states[1].epoch, 0, 1)  # type: ignore[union-attr]
        assert await events.heads([ann, bob, cat]) == {ann: 0}
        assert await checks.hello(good, ann) == states[1]  # the stream as stored, epoch kept
    finally:
        await checks.close()
    # At the expiry instant itself the session is over (``expires_at > now``), as for ``is_active``.
    clock.advance(30 * 60 - 2)
    assert await sessions.active_of([(good, ann)]) == {(good, ann)}
    clock.advance(1)
    assert await sessions.active_of([(good, ann)]) == set()
    assert not await sessions.is_active(good, ann)
