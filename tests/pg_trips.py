"""Counting the round trips a pool's PostgreSQL connections make, at asyncpg's protocol.

Why count: on PostgreSQL each statement costs the server process ~75–100 µs of
CPU (asyncpg's encoding, the socket's system calls) and a turn of the event
loop, so the number of statements a hot path sends is what it costs
(issue 15). A test that counts them fails when a statement is added back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["TRIPS", "CountingProtocol", "count_trips"]

#: asyncpg protocol calls that are a round trip each (the simple query, a bound execution, a prepare).
TRIPS = frozenset({"query", "bind_execute", "bind_execute_many", "prepare"})


class CountingProtocol:
    """Forwards everything to asyncpg's protocol and logs (call, SQL) of each round trip."""

    def __init__(self, real: Any, log: list[tuple[str, str]]) -> None:
        self._real = real
        self._log = log

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in TRIPS:
            return attr
        log = self._log

        def call(*args: Any, **kwargs: Any) -> Any:
            if name.startswith("bind_"):  # (state, args, …): a prepared statement's execution
                sql = (kwargs["state"] if "state" in kwargs else args[0]).query
            else:  # query(sql, …), prepare(name, sql, …)
                sql = kwargs.get("query", args[0] if name == "query" else args[1])
            if str(sql).strip() != ";":  # the idle ping of a held connection (kernel.db.held), as below
                log.append((name, " ".join(str(sql).split())))
            return attr(*args, **kwargs)

        return call


def count_trips(engine: AsyncEngine, log: list[tuple[str, str]]) -> None:
    """Log every round trip of ``engine``'s connections opened from now on into ``log``.

    The idle ping a checkout may send (``kernel.db.database``) is turned off, and a held
    connection's (``kernel.db.held``: the statement ``;``) is not logged: a loaded machine's
    pause is not the counted path's statement.
    """

    def count(dbapi: Any, _record: Any) -> None:
        raw = dbapi._connection
        raw._protocol = CountingProtocol(raw._protocol, log)

    def no_idle_ping(_dbapi: Any, record: Any, _proxy: Any) -> None:
        record.info.pop("zzd_idle_since", None)

    event.listen(engine.sync_engine, "connect", count)
    event.listen(engine.sync_engine.pool, "checkout", no_idle_ping, insert=True)
