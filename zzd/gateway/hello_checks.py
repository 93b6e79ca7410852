"""The database side of a hello, shared by every hello waiting at the same moment.

A hello needs two reads: is the token's session still good, and where does
the person's event stream stand (created on a person's very first
connection). Done one hello at a time, a reconnect storm (every client of a
dead process at once, S9) or a server start queued thousands of small
queries, and each first connection committed a write of its own: about 120
hellos a second against 1,500 for a bare WebSocket server (issue 15). Here
the hellos that arrive while one check runs wait for the next, and the next
checks them all in one statement (group commit, ``messaging/batching.py``):
both reads at once, the session rules being ``SessionStore.active_of``'s own
text and each good session's stream position joined to it. As two
statements (a pool checkout and a round trip each) they were 0.10–0.18 ms
of a hello's 0.7 ms of server CPU (BENCHMARKS.md, issue 15 item 2). Reading
the position in the session check means the socket takes live events
before its session is known good (``handlers.hello``); it claims its place
under the per-person cap only after.
The same goes for the first read after a hello: each resuming socket's
catch-up page (and any later gap repair) is read together with the pages of
the sockets waiting at the same moment (:meth:`EventLog.read_pages`).

Nothing is cached: every hello reads the session as it is in the database
at that moment, so revocation works exactly as before (a revoked session is
refused; live sockets are closed by the announcement and the safety poll).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import driver_fetch
from kernel.errors import ResyncRequired
from kernel.sessions import ACTIVE_OF, SessionStore
from messaging.batching import Batcher
from messaging.db_errors import as_unavailable, with_db_retry
from messaging.events import MAX_PAGE, EventLog, StreamState, SyncPage

logger = logging.getLogger(__name__)

__all__ = ["HelloChecks"]

#: Most hellos checked by one statement.
MAX_BATCH = 500

#: The good sessions among a batch's ``(session, person)`` claims, each with its person's stream
#: position (NULLs while the person has no stream yet): one statement, one array of session ids.
_HELLOS = (
    "WITH a AS ({active}) SELECT a.id, a.person_id, st.epoch, st.last_seq, st.min_seq"
    " FROM a LEFT JOIN person_streams st ON st.person_id = a.person_id"
)
_PG_HELLOS = _HELLOS.format(active=ACTIVE_OF.format(ids="= ANY($1::text[])", now="$2"))
_SQLITE_HELLOS = _HELLOS.format(active=ACTIVE_OF.format(ids="IN (SELECT value FROM json_each(?))", now="?"))


class HelloChecks:
    def __init__(self, db: Database, clock: Clock, sessions: SessionStore, events: EventLog) -> None:
        """``db`` holds both the sessions and the event streams (one statement reads both)."""
        self._db = db
        self._clock = clock
        self._sessions = sessions
        self._events = events
        self._active: Batcher[tuple[str, int], bool] = Batcher(
            self._check_sessions, max_batch=MAX_BATCH, name="session-checks"
        )
        self._hellos: Batcher[tuple[str, int], StreamState | None] = Batcher(
            self._check_hellos, max_batch=MAX_BATCH, name="hellos"
        )
        self._pages: Batcher[tuple[int, int], SyncPage] = Batcher(
            self._read_pages, max_batch=MAX_BATCH, name="catch-up"
        )

    async def session_active(self, session_id: str, person_id: int) -> bool:
        """:meth:`SessionStore.is_active`, checked together with the other requests waiting (REST)."""
        return await self._active.submit((session_id, person_id))

    async def hello(self, session_id: str, person_id: int) -> StreamState | None:
        """The person's stream position (:meth:`EventLog.state`) if :meth:`SessionStore.is_active`, else None.

        Read together with the other hellos waiting, in one statement; a
        person's very first connection creates their stream (one write for
        all the first connections of the batch). A refused session creates
        nothing.
        """
        return await self._hellos.submit((session_id, person_id))

    async def page(self, person_id: int, since: int) -> SyncPage:
        """:meth:`EventLog.read` (no epoch check) of one socket's catch-up, read with the others waiting.

        Raises:
            ResyncRequired: as :meth:`EventLog.read`.
        """
        return await self._pages.submit((person_id, since))

    async def close(self) -> None:
        await self._active.close()
        await self._hellos.close()
        await self._pages.close()

    async def _check_sessions(self, claims: Sequence[tuple[str, int]]) -> list[bool | BaseException]:
        try:
            active = await self._sessions.active_of(claims)
        except Exception as exc:
            _raise_unavailable(exc)
            raise
        return [c in active for c in claims]

    async def _check_hellos(self, claims: Sequence[tuple[str, int]]) -> list[StreamState | None | BaseException]:
        try:
            async with self._db.read() as conn:
                # Straight to the driver with one array parameter, as ``SessionStore.active_of``.
                driver = (await conn.get_raw_connection()).driver_connection
                ids = sorted({sid for sid, _ in claims})
                rows = await driver_fetch(conn, driver, _PG_HELLOS, _SQLITE_HELLOS, ids, self._clock.now())
            active: set[tuple[str, int]] = set()
            states: dict[int, StreamState] = {}
            for sid, pid, epoch, last_seq, min_seq in rows:
                active.add((str(sid), int(pid)))
                if epoch is not None:
                    states[int(pid)] = StreamState(str(epoch), int(last_seq), int(min_seq))
            missing = sorted({pid for c in claims if c in active and (pid := c[1]) not in states})
            if missing:  # first connections: their streams, created in one short write
                await with_db_retry(lambda: self._events.ensure_streams(missing))
                states.update(await self._events.states(missing))
        except Exception as exc:
            _raise_unavailable(exc)
            raise
        return [
            (states[c[1]] if c[1] in states else LookupError(f"no event stream for person {c[1]}"))
            if c in active
            else None
            for c in claims
        ]

    async def _read_pages(self, requests: Sequence[tuple[int, int]]) -> list[SyncPage | BaseException]:
        try:
            pages: list[SyncPage | ResyncRequired] = await self._events.read_pages(requests, MAX_PAGE)
        except Exception as exc:
            _raise_unavailable(exc)
            raise
        return list(pages)


def _raise_unavailable(exc: Exception) -> None:
    """A database that is away or full fails the whole batch at once (``Batcher`` retries nothing then)."""
    busy = as_unavailable(exc)
    if busy is not None:
        raise busy from exc
