"""The database side of a hello, shared by every hello waiting at the same moment.

A hello needs two reads: is the token's session still good, and where does
the person's event stream stand (created on a person's very first
connection). Done one hello at a time, a reconnect storm (every client of a
dead process at once, S9) or a server start queued thousands of small
queries, and each first connection committed a write of its own: about 120
hellos a second against 1,500 for a bare WebSocket server (issue 15). Here
the hellos that arrive while one check runs wait for the next, and the next
checks them all in one statement (group commit, ``messaging/batching.py``).
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

from kernel.errors import ResyncRequired
from kernel.sessions import SessionStore
from messaging.batching import Batcher
from messaging.db_errors import as_unavailable
from messaging.events import MAX_PAGE, EventLog, StreamState, SyncPage

logger = logging.getLogger(__name__)

__all__ = ["HelloChecks"]

#: Most hellos checked by one statement.
MAX_BATCH = 500


class HelloChecks:
    def __init__(self, sessions: SessionStore, events: EventLog) -> None:
        self._sessions = sessions
        self._events = events
        self._active: Batcher[tuple[str, int], bool] = Batcher(
            self._check_sessions, max_batch=MAX_BATCH, name="hello-sessions"
        )
        self._states: Batcher[int, StreamState] = Batcher(self._read_states, max_batch=MAX_BATCH, name="hello-streams")
        self._pages: Batcher[tuple[int, int], SyncPage] = Batcher(
            self._read_pages, max_batch=MAX_BATCH, name="catch-up"
        )

    async def session_active(self, session_id: str, person_id: int) -> bool:
        """:meth:`SessionStore.is_active`, checked together with the other hellos waiting."""
        return await self._active.submit((session_id, person_id))

    async def stream_state(self, person_id: int) -> StreamState:
        """:meth:`EventLog.state`, read together with the other hellos waiting."""
        return await self._states.submit(person_id)

    async def page(self, person_id: int, since: int) -> SyncPage:
        """:meth:`EventLog.read` (no epoch check) of one socket's catch-up, read with the others waiting.

        Raises:
            ResyncRequired: as :meth:`EventLog.read`.
        """
        return await self._pages.submit((person_id, since))

    async def close(self) -> None:
        await self._active.close()
        await self._states.close()
        await self._pages.close()

    async def _check_sessions(self, claims: Sequence[tuple[str, int]]) -> list[bool | BaseException]:
        try:
            active = await self._sessions.active_of(claims)
        except Exception as exc:
            _raise_unavailable(exc)
            raise
        return [c in active for c in claims]

    async def _read_states(self, person_ids: Sequence[int]) -> list[StreamState | BaseException]:
        try:
            states = await self._events.states(person_ids)
        except Exception as exc:
            _raise_unavailable(exc)
            raise
        return [states[p] if p in states else LookupError(f"no event stream for person {p}") for p in person_ids]

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
