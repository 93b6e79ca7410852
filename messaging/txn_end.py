"""The end of a unit of work on PostgreSQL in one statement: outbox rows, audit entries, per-person events.

Why one statement: every unit of work ends with the same writes (``Txn._finish``):
its outbox rows, its audit entries and the append of its events, which itself was
three statements (lock the streams in ascending ``person_id``, set the heads,
insert the events). Each statement is a round trip and a turn of the event loop,
and on the client side each costs more CPU than the row it writes (a task's
profile: asyncpg's and SQLAlchemy's per-statement work were most of the server's
time). Here they are one fixed statement of data-modifying CTEs sent straight to
asyncpg, with one array parameter per column.

The append keeps ``EventLog.append``'s guarantees: the stream rows are locked in
ascending ``person_id`` order (the ``locked`` CTE: LockRows above the Sort), each
recipient's events get the next numbers of its stream in the order given (a
window over the rows' ordinality; :func:`messaging.events.number_events` numbers
them the same way for the wake-ups), and the heads are set in the same
statement. When a recipient has no stream row yet, the statement writes no event
(the count of locked rows says so) and the caller appends through
``EventLog.append``, which creates the missing streams first; the outbox and
audit rows are written either way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import is_postgres
from messaging.events import NewEvent, number_events
from messaging.wakeup import EventGroup

logger = logging.getLogger(__name__)

__all__ = ["APPEND_EV", "finish_pg", "ends_in_one_statement"]


def ends_in_one_statement(conn: AsyncConnection) -> bool:
    """Whether :func:`finish_pg` ends transactions on ``conn`` (PostgreSQL; SQLite keeps the separate writes).

    Asked here, in the module that holds the driver-level statement, so that the unit of
    work stays free of dialect checks (tests/test_dialect_places.py).
    """
    return is_postgres(conn)


_OUTBOX = """outbox_rows AS (
    INSERT INTO outbox_events (event_id, type, aggregate, aggregate_id, payload, created_at)
    SELECT e, t, a, i, d, {now} FROM unnest({e}::text[], {t}::text[], {a}::text[], {i}::bigint[], {d}::text[])
        WITH ORDINALITY AS v(e, t, a, i, d, o) ORDER BY o
)"""
_AUDIT = """audit_rows AS (
    INSERT INTO audit_log (at, actor_person_id, acting_position_id, action, outcome, unit_id, unit_path, detail)
    SELECT {now}, p, q, a, r, u, w, d
    FROM unnest({p}::bigint[], {q}::bigint[], {a}::text[], {r}::text[], {u}::bigint[], {w}::text[], {d}::text[])
        WITH ORDINALITY AS v(p, q, a, r, u, w, d, o) ORDER BY o
)"""
#: The append of the events in a CTE ``ev`` (person ``p``, kind ``k``, payload ``d``, order ``o``) to the
#: streams of ``persons`` (every ``p``, ascending): also the tail of the direct chat's one statement
#: that stores a batch's messages and their events (``messaging.chat_storage``).
APPEND_EV = """locked AS MATERIALIZED (
    SELECT person_id, last_seq FROM person_streams
    WHERE person_id = ANY({persons}::bigint[]) ORDER BY person_id FOR UPDATE
),
complete AS (SELECT count(*) = cardinality({persons}::bigint[]) AS ok FROM locked),
numbered AS (
    SELECT ev.p, ev.k, ev.d, l.last_seq + row_number() OVER (PARTITION BY ev.p ORDER BY ev.o) AS q
    FROM ev JOIN locked AS l ON l.person_id = ev.p
),
heads AS (
    UPDATE person_streams AS s SET last_seq = h.q
    FROM (SELECT p, max(q) AS q FROM numbered GROUP BY p) AS h
    WHERE s.person_id = h.p AND (SELECT ok FROM complete)
),
appended AS (
    INSERT INTO person_events (person_id, seq, kind, payload, created_at)
    SELECT p, q, k, d, {now} FROM numbered WHERE (SELECT ok FROM complete)
)"""
_EV_ARRAYS = """ev AS (
    SELECT p, k, d, o FROM unnest({p}::bigint[], {k}::text[], {d}::text[]) WITH ORDINALITY AS v(p, k, d, o)
),
"""
_EVENTS = "".join((_EV_ARRAYS, APPEND_EV))


@cache
def _statement(outbox: bool, audit: bool, events: bool) -> str:
    """The fixed SQL for one combination of parts ($1 is the time; each part's arrays follow in order)."""
    n = 1
    parts: list[str] = []

    def params(names: str) -> dict[str, str]:
        nonlocal n
        out = {}
        for name in names:
            n += 1
            out[name] = f"${n}"
        return out

    if outbox:
        parts.append(_OUTBOX.format(now="$1", **params("etaid")))
    if audit:
        parts.append(_AUDIT.format(now="$1", **params("pqaruwd")))
    if events:
        ps = params("pkd")
        parts.append(_EVENTS.format(now="$1", persons=f"${n + 1}", **ps))
        n += 1
        tail = "SELECT person_id, last_seq FROM locked"
    else:
        tail = "SELECT 1"
    return "WITH " + ",\n".join(parts) + "\n" + tail


async def finish_pg(
    driver: Any,
    now: datetime,
    outbox: Sequence[dict[str, Any]],
    audit: Sequence[dict[str, Any]],
    events: Sequence[NewEvent],
) -> list[EventGroup] | None:
    """Write ``outbox`` rows (``outbox.event_row``), ``audit`` rows (``audit.entry_rows``) and append ``events``.

    ``driver`` is the asyncpg connection inside the open transaction. Returns the
    events' wake-up groups, or ``None`` when a recipient had no stream row and
    nothing of ``events`` was written (the outbox and audit rows were): the
    caller then appends them through ``EventLog.append``.

    With nothing to write it returns ``[]`` without a statement: the one it would send is
    ``WITH SELECT 1``, which PostgreSQL refuses. A chat batch whose every send was a retry of a
    stored message comes here with no events (the 湖南 audit: a ``client_msg_id`` reused for
    another recipient answered ``500``).
    """
    if not (outbox or audit or any(e.recipients for e in events)):
        return []
    args: list[Any] = [now]
    if outbox:
        args += [[r[c] for r in outbox] for c in ("event_id", "type", "aggregate", "aggregate_id", "payload")]
    if audit:
        cols = ("actor_person_id", "acting_position_id", "action", "outcome", "unit_id", "unit_path", "detail")
        args += [[r[c] for r in audit] for c in cols]
    pids: list[int] = []
    kinds: list[str] = []
    payloads: list[str] = []
    for e in events:
        for pid in dict.fromkeys(e.recipients):
            pids.append(pid)
            kinds.append(e.kind)
            payloads.append(e.payload)
    persons = sorted(set(pids))
    if persons:
        args += [pids, kinds, payloads, persons]
    rows = await driver.fetch(_statement(bool(outbox), bool(audit), bool(persons)), *args)
    if not persons:
        return []
    last = {int(p): int(s) for p, s in rows}
    if len(last) != len(persons):
        return None
    return number_events(events, last)
