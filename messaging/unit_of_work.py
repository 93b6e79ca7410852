"""One way to write: a transaction, its per-person events and outbox rows, retries, wake-ups after commit.

Every write of the messaging domain reads the same way::

    async def change(tx: Txn) -> int:
        row = await store.do_the_change(tx.conn, ..., tx.now)
        tx.emit(NewEvent("thing.changed", payload, people))      # per-person events
        tx.record("task.accepted", "task", task_id, body)        # outbox row (docs/events.md)
        return row.id

    thing_id = await uow.run(change)

:meth:`UnitOfWork.run` opens the write transaction, calls ``change``, writes
the collected outbox rows and then the events (``EventLog.append`` last, so
the stream rows stay locked as briefly as possible), commits, and only then
hands the wake-ups to ``notify`` and runs the ``on_commit`` callbacks. This
is Zulip's ``send_event_on_commit`` (``zerver/tornado/django_api.py``): a
change that rolls back never wakes anyone, and a committed change always
has its events and outbox rows, because they were written in its
transaction (persist, then publish: docs/style.md lesson 4).

A lock conflict (deadlock, serialization failure) reruns ``change`` from the
start on a fresh :class:`Txn`; a database outage becomes ``Unavailable``
(``messaging/db_errors.py``). So ``change`` must keep no state outside its
``Txn`` between attempts: whatever it collects goes through ``tx``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from kernel import audit
from kernel.clock import Clock
from kernel.db.database import Database
from messaging import outbox
from messaging.batching import Batcher
from messaging.db_errors import with_db_retry
from messaging.events import EventLog, NewEvent, driver_in_transaction
from messaging.ports import Notify
from messaging.txn_end import ends_in_one_statement, finish_pg
from messaging.wakeup import EventGroup

logger = logging.getLogger(__name__)

__all__ = ["Txn", "UnitOfWork"]

T = TypeVar("T")
Item = TypeVar("Item")
R = TypeVar("R")


class Txn:
    """One attempt of a unit of work: the open transaction and what it will announce after commit.

    Attributes:
        conn: the write transaction (commits when :meth:`UnitOfWork.run`'s change returns).
        now: the change's time, read once per attempt from the injected clock.
    """

    __slots__ = ("_audit", "_callbacks", "_events", "_groups", "_outbox", "_pending", "conn", "now")

    def __init__(self, conn: AsyncConnection, now: datetime, events: EventLog) -> None:
        self.conn = conn
        self.now = now
        self._events = events
        #: Events appended at the end of the change, in one ``EventLog.append`` (one lock order).
        self._pending: list[NewEvent] = []
        #: Outbox rows (``outbox.event_row``) inserted at the end, before the events.
        self._outbox: list[dict[str, Any]] = []
        #: Audit entries inserted at the end (unsealed; the sealer chains them after commit).
        self._audit: list[audit.AuditEntry] = []
        #: Wake-ups of events already written in this transaction; handed to ``notify`` after commit.
        self._groups: list[EventGroup] = []
        self._callbacks: list[Callable[[], None]] = []

    def emit(self, *events: NewEvent) -> None:
        """Append these events to their recipients' streams at the end of the change (the usual way)."""
        self._pending.extend(e for e in events if e.recipients)

    async def append(self, events: Sequence[NewEvent]) -> list[EventGroup]:
        """Append now and return the groups, for a change that needs the sequence numbers it was given.

        Use either this or :meth:`emit` in one change: each append locks its
        recipients' streams in ascending order, and two appends in one
        transaction would take two such passes.
        """
        groups: list[EventGroup] | None = None
        if ends_in_one_statement(self.conn):
            # Lock, number and write in one statement (the chat's every batch comes here).
            driver = await driver_in_transaction(self.conn)
            groups = await finish_pg(driver, self.now, (), (), events)
        if groups is None:  # SQLite, or a recipient without a stream row: EventLog.append creates it
            groups = await self._events.append(self.conn, events, self.now)
        self._groups.extend(groups)
        return groups

    async def append_bulk(self, kind: str, items: Sequence[tuple[int, str]]) -> list[EventGroup]:
        """One event each to many persons, a payload per person (``EventLog.append_bulk``)."""
        groups = await self._events.append_bulk(self.conn, kind, items, self.now)
        self._groups.extend(groups)
        return groups

    def wake(self, groups: Iterable[EventGroup]) -> None:
        """Wake-ups of events a helper wrote itself in this transaction (delivered after commit)."""
        self._groups.extend(groups)

    def record(self, type_: str, aggregate: str, aggregate_id: int, payload: dict[str, Any]) -> str:
        """An outbox event for the apps platform (``docs/events.md``); returns its ``event_id``."""
        if aggregate not in outbox.AGGREGATES:
            raise ValueError(f"unknown aggregate {aggregate!r}")
        row = outbox.event_row(type_, aggregate, aggregate_id, payload, self.now)
        self._outbox.append(row)
        return str(row["event_id"])

    def audit(self, entry: audit.AuditEntry) -> None:
        """Record ``entry`` in the audit log with this change (``kernel.audit.record``, written at the end)."""
        self._audit.append(entry)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction has committed (never for an attempt that rolled back)."""
        self._callbacks.append(callback)

    async def _finish(self) -> None:
        """Outbox rows, audit entries, then the events: on PostgreSQL one statement (``messaging.txn_end``)."""
        if ends_in_one_statement(self.conn) and (self._outbox or self._audit or self._pending):
            driver = await driver_in_transaction(self.conn)
            rows = audit.entry_rows(self._audit, self.now)
            groups = await finish_pg(driver, self.now, self._outbox, rows, self._pending)
            if rows:
                audit.seal_after_commit(self.conn)
            if groups is None:  # a recipient without a stream row: EventLog.append creates it
                groups = await self._events.append(self.conn, self._pending, self.now)
            self._groups.extend(groups)
            return
        await outbox.record_many(self.conn, self._outbox)
        await audit.record_many(self.conn, self._audit, self.now)
        if self._pending:
            await self.append(self._pending)


class UnitOfWork:
    """Runs changes as units of work against one database, one event log and one wake-up path.

    Args:
        db: the database whose write transaction each change runs in.
        events: the per-person event streams.
        clock: gives each attempt its ``now``.
        notify: takes the wake-ups after commit (this process's sockets, then the broker).
        on_outbox: called after a commit that wrote outbox rows, so whoever reads the
            outbox (the apps platform's dispatcher) looks now instead of at its next poll.
    """

    def __init__(
        self, db: Database, events: EventLog, clock: Clock, notify: Notify, on_outbox: Callable[[], None] | None = None
    ) -> None:
        self.db = db
        self.events = events
        self.clock = clock
        self._notify = notify
        self._on_outbox = on_outbox

    def join(self, conn: AsyncConnection, now: datetime) -> Txn:
        """A ``Txn`` inside a transaction someone else owns (an org edit's, ``org_tree.structure``).

        The owner calls :meth:`finish` before its commit and :meth:`announce` after it.
        """
        return Txn(conn, now, self.events)

    @staticmethod
    async def finish(tx: Txn) -> None:
        await tx._finish()

    def announce(self, tx: Txn) -> None:
        """After the owner's commit: wake the recipients and run the callbacks."""
        if tx._groups:
            self._notify(tx._groups)
        self._outbox_written(tx)
        for callback in tx._callbacks:
            callback()

    def announce_groups(self, groups: list[EventGroup]) -> None:
        """After a commit outside :meth:`run`: hand the wake-ups of the events it wrote to ``notify``.

        For a write that runs whole on SQLite's thread (the direct chat's send batch,
        ``Database.sqlite_write``), where no :class:`Txn` collects them.
        """
        if groups:
            self._notify(groups)

    async def run(self, change: Callable[[Txn], Awaitable[T]], *, deliver: Notify | None = None) -> T:
        """Run ``change`` in one write transaction, retried on lock conflicts; announce after commit.

        Args:
            change: the change; see :class:`Txn` for what it may collect.
            deliver: where this change's wake-ups go instead of ``notify`` (e.g. only
                this process's sockets, when the other processes write their own).

        Returns:
            What ``change`` returned on the attempt that committed.

        Raises:
            Unavailable: the database is down or its pool exhausted; nothing was written.
            Exception: whatever ``change`` raised (the transaction rolled back, nothing is announced).
        """
        committed: list[Txn] = []

        async def attempt() -> T:
            async with self.db.write() as conn:
                tx = Txn(conn, self.clock.now(), self.events)
                result = await change(tx)
                await tx._finish()
            committed.append(tx)  # reached only when the block above committed
            return result

        result = await with_db_retry(attempt)
        tx = committed[-1]
        if tx._groups:
            (deliver or self._notify)(tx._groups)
        self._outbox_written(tx)
        for callback in tx._callbacks:
            callback()
        return result

    def _outbox_written(self, tx: Txn) -> None:
        if tx._outbox and self._on_outbox is not None:
            self._on_outbox()

    def batcher(
        self,
        write: Callable[[Txn, Sequence[Item]], Awaitable[list[R | BaseException]]],
        *,
        max_batch: int = 256,
        name: str = "batcher",
    ) -> Batcher[Item, R]:
        """Group commit: what callers queue while a batch commits is written next, by ``write``, in one :meth:`run`.

        Many callers share one transaction (one fsync); a batch that fails is retried item by item by the Batcher.
        """

        async def batch(items: Sequence[Item]) -> list[R | BaseException]:
            return await self.run(lambda tx: write(tx, items))

        return Batcher(batch, max_batch=max_batch, name=name)
