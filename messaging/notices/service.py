"""NoticeService: preview, send (fan-out), receipts, recall, reminders, progress events, handover.

Send path (persist, then publish): one resolution against the current index,
then ONE transaction writes the notice (with the fan-out lease held by this
process), every receipt (COPY on PostgreSQL, executemany on SQLite, via
``org_tree.bulk``) and the DING steps of an urgent notice. The recipients'
``notice.new`` events are written after the commit by ``NoticeFanout``
(``coordinator.py``, through ``relay.py``): connected recipients first, then
everyone else in chunks.

The reads of a sent notice (``get``, ``progress``, ``pending``, ``receipt_history``)
and the access check that recall and remind share with them are in ``reads.py``
(``NoticeReads``, which this service inherits). Access: a notice's progress and
recall belong to its sender person and to the current holders of the position it
was sent as; receipts belong to their recipients. Anyone else gets ``NotFound``,
the same as for a missing notice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.audit import AuditEntry
from kernel.db.dialect import insert_ignore
from kernel.errors import BadRequest, Conflict, Forbidden, RateLimited, ZzdError
from messaging.events import paused_gc
from messaging.notices.coordinator import NoticeFanout
from messaging.notices.deferred import PackedReceipts, pack, receipt_columns
from messaging.notices.fanout import RECEIPT_COLUMNS, NoticeHead, shared_event
from messaging.notices.handover import unread_transfer_events
from messaging.notices.model import (
    Compose,
    NoticeConfig,
    ReceiptState,
    SendResult,
)
from messaging.notices.notifier import Notifier
from messaging.notices.reads import NoticeReads
from messaging.notices.receipts import ReceiptOp, ReceiptWriter
from messaging.notices.relay import head_of_row
from messaging.notices.remind import REMIND_INTERVAL, reminder_events
from messaging.notices.schema import notice_ding_steps, notice_pending_receipts, notice_receipts, notices
from messaging.notices.storage import receipt_totals
from messaging.ports import IndexProvider, PhotoLinker
from messaging.shapes import NoticeProgress, NoticeRecalled
from messaging.unit_of_work import Txn, UnitOfWork
from org_tree.bulk import bulk_insert
from org_tree.grants import unit_path_of
from org_tree.index import OrgIndex
from org_tree.jurisdiction import check_jurisdiction
from org_tree.preview import Preview, preview
from org_tree.resolution import Audience, VacancyPolicy, resolve_ranges
from org_tree.selectors import Selector

logger = logging.getLogger(__name__)

__all__ = ["NOTICE_REF", "IndexProvider", "NoticeService"]


#: ``attachment_links.ref_kind`` of a notice's photos.
NOTICE_REF = "notice"


class NoticeService(NoticeReads):
    """Notices to positions, with receipts, rollups, recall, DING steps and handover.

    Args:
        db: the database.
        events: per-person event streams (events are appended inside our transactions).
        clock: wall and monotonic time.
        notify: called after commit with the wake-up groups (must not block).
        index_provider: returns the current ``OrgIndex`` of this process.
        notifier: out-of-band escalation (used by the ``DingScheduler`` built from this service).
        fanout: writes the recipients' events after a send commits (``coordinator.py``).
        config: recall window, DING ladder, progress interval.
        policy: the vacancy policy of resolution.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        index_provider: IndexProvider,
        notifier: Notifier,
        fanout: NoticeFanout,
        *,
        config: NoticeConfig | None = None,
        policy: VacancyPolicy | None = None,
        photos: PhotoLinker | None = None,
    ) -> None:
        super().__init__(uow.db, index_provider)
        #: Links a notice's attachments that are the sender's uploads to it (``NOTICE_REF``): see can_see.
        self.photos = photos
        self._clock = uow.clock
        self._uow = uow
        self.notifier = notifier
        self.config = config or NoticeConfig()
        self._policy = policy or VacancyPolicy()
        # Notices whose receipts changed since their last ``notice.progress`` event
        # (this process only; each process flushes what it ingested).
        self._dirty: set[int] = set()
        # notice id → monotonic time of its last ``notice.progress`` event from this process.
        self._last_progress: dict[int, float] = {}
        self._receipts = ReceiptWriter(self._uow)
        self.fanout = fanout

    # ------------------------------------------------------------ resolution
    def _resolve(self, index: OrgIndex, actor_person_id: int, actor_position_id: int, sel: Selector) -> Audience:
        if not index.holds(actor_person_id, actor_position_id):
            raise Forbidden("you do not hold that position", data={"as_position": actor_position_id})
        ranges = check_jurisdiction(index, actor_position_id, sel)
        return resolve_ranges(index, ranges, self._policy)

    def preview(self, actor_person_id: int, actor_position_id: int, selector: Selector) -> Preview:
        """What ``selector`` reaches if sent as ``actor_position_id``: counts per child unit and level.

        Raises:
            Forbidden: the actor does not hold the position, or ``OUT_OF_SCOPE``.
            NotFound: the selector names a missing unit, role or position.
        """
        index = self._index()
        return preview(index, self._resolve(index, actor_person_id, actor_position_id, selector))

    # ------------------------------------------------------------------ send
    async def send(self, actor_person_id: int, actor_position_id: int, compose: Compose) -> SendResult:
        """Resolve, write the notice with all receipts in one transaction, then start the fan-out.

        Idempotent by ``(actor_person_id, compose.client_msg_id)``: a retry returns the
        stored notice with ``duplicate=True`` and writes nothing.

        Raises:
            BadRequest: the selector addresses no position.
            Forbidden: the actor does not hold the position, or the selector is out of scope.
            NotFound: the selector names a missing unit, role or position.
            Unavailable: the database is down; retry with the same client_msg_id.
        """
        existing = await self._existing(actor_person_id, compose.client_msg_id)
        if existing is not None:
            return existing
        index = self._index()
        audience = self._resolve(index, actor_person_id, actor_position_id, compose.selector)
        if not audience.positions:
            # A notice to nobody (an exclusion that takes away everything, say) is a mistake of the
            # sender's, refused as a task to nobody is; a preview shows the empty audience first.
            raise BadRequest("the selector addresses no position", data={"field": "selector"})
        # Built before the transaction opens (and kept across its retries): for a
        # province-wide notice this is ~200,000 receipts of Python work.
        with paused_gc():
            receipts = receipt_columns(index, audience)
            packed = pack(receipts) if len(receipts) > self.fanout.relay.inline_receipts else None

        async def change(tx: Txn) -> SendResult:
            result = await self._write_notice(
                tx, index, audience, receipts, packed, actor_person_id, actor_position_id, compose
            )
            if not result.duplicate:
                # A large notice's receipts are written after the commit (deferred.py), connected ones first.
                later = receipts if packed is not None else None
                # The head as the fan-out would read it back (UTCDateTime hands back UTC): one read less.
                deadline = None if compose.deadline is None else compose.deadline.astimezone(UTC)
                head = NoticeHead(
                    result.notice_id, compose.title, compose.priority, bool(compose.ack_required), deadline,
                    tx.now.astimezone(UTC), actor_person_id, actor_position_id,
                )  # fmt: skip
                tx.on_commit(lambda: self.fanout.committed(result.notice_id, later, head))
            return result

        return await self._uow.run(change)

    async def _existing(self, sender: int, client_msg_id: str) -> SendResult | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(notices).where(
                        notices.c.sender_person_id == sender, notices.c.client_msg_id == client_msg_id
                    )
                )
            ).first()
        return None if row is None else _stored(row)

    async def _write_notice(
        self,
        tx: Txn,
        index: OrgIndex,
        audience: Audience,
        receipts: PackedReceipts,
        packed: bytes | None,
        sender: int,
        sender_position: int,
        c: Compose,
    ) -> SendResult:
        conn, now = tx.conn, tx.now
        stmt = (
            insert_ignore(conn, notices, ["sender_person_id", "client_msg_id"])
            .values(
                sender_person_id=sender,
                sender_position_id=sender_position,
                client_msg_id=c.client_msg_id,
                title=c.title,
                body=c.body,
                attachments=json.dumps(list(c.attachments), ensure_ascii=False),
                selector=c.selector_json,
                priority=c.priority,
                ack_required=c.ack_required,
                deadline=c.deadline,
                created_at=now,
                recalled_at=None,
                audience_positions=len(audience.positions),
                audience_persons=len(audience.persons),
                receipt_count=len(receipts),
                audience_unfilled=len(audience.unfilled),
                org_version=audience.version,
                fanout_claimed_by=self.fanout.relay.token,
                fanout_lease_until=now + self.fanout.relay.lease,
            )
            .returning(notices.c.id)
        )
        notice_id = (await conn.execute(stmt)).scalar()
        if notice_id is None:  # a concurrent retry of the same send committed first
            row = (
                await conn.execute(
                    select(notices).where(
                        notices.c.sender_person_id == sender, notices.c.client_msg_id == c.client_msg_id
                    )
                )
            ).one()
            return _stored(row)
        notice_id = int(notice_id)
        if self.photos is not None and c.attachments:
            await self.photos.link_owned(
                conn, list(c.attachments), person_id=sender, ref_kind=NOTICE_REF, ref_id=notice_id
            )
        n = len(receipts)
        if packed is not None:
            pending = notice_pending_receipts
            await conn.execute(insert(pending).values(notice_id=notice_id, receipts=n, data=packed))
        else:
            await bulk_insert(conn, notice_receipts, RECEIPT_COLUMNS, receipts.tuples(notice_id))
        tx.audit(notice_audit(index, notice_id, sender, sender_position, c, audience, n))
        if c.priority == "urgent" and n:
            await conn.execute(
                notice_ding_steps.insert(),
                [
                    {"notice_id": notice_id, "step": i, "action": action, "due_at": now + delay, "attempts": 0}
                    for i, (delay, action) in enumerate(self.config.ding.steps)
                ],
            )
        return SendResult(
            notice_id, now, False, len(audience.positions), len(audience.persons), n, len(audience.unfilled)
        )

    # ------------------------------------------------------------ receipts
    async def mark_delivered(self, person_id: int, notice_id: int) -> list[ReceiptState]:
        """The client has the notice (live or through sync). Idempotent."""
        return await self._mark(person_id, notice_id, "delivered", None, None)

    async def mark_delivered_many(self, marks: Sequence[tuple[int, int]]) -> int:
        """``(person, notice)`` pairs whose notice reached the person's device (the server's own marks).

        Queued into the receipt batches without a coroutine each (a province-wide
        notice brings thousands per process at once). A mark that fails for the
        receipt's own sake (recalled meanwhile, moved by a handover) records nothing.
        Returns how many changed a receipt.
        """
        futs = self._receipts.submit_many([ReceiptOp(p, n, "delivered", None, None) for p, n in marks])
        changed = 0
        for (_p, n), res in zip(marks, await asyncio.gather(*futs, return_exceptions=True), strict=True):
            if isinstance(res, ZzdError):
                continue
            if isinstance(res, BaseException):
                logger.error("delivered receipt for notice %s not recorded: %r", n, res)
                continue
            if res.changed:
                self._dirty.add(n)
                changed += 1
        return changed

    async def mark_read(self, person_id: int, notice_id: int) -> list[ReceiptState]:
        """The recipient opened the notice: read for every position they receive it through. Idempotent."""
        return await self._mark(person_id, notice_id, "read", None, None)

    async def acknowledge(
        self, person_id: int, notice_id: int, *, position_id: int | None = None, reply: str | None = None
    ) -> list[ReceiptState]:
        """Acknowledge for one position (or, with ``position_id`` None, for every position).

        A second acknowledgement changes nothing (the first time and reply stay).

        Raises:
            NotFound: the person is not a recipient (through that position), or no such notice.
            Conflict: the notice was recalled.
        """
        if reply is not None:
            from kernel.text import check_text
            from messaging.notices.model import MAX_REPLY

            check_text(reply, field="reply", max_chars=MAX_REPLY, allow_empty=True)
        return await self._mark(person_id, notice_id, "acked", position_id, reply)

    async def _mark(
        self, person_id: int, notice_id: int, what: str, position_id: int | None, reply: str | None
    ) -> list[ReceiptState]:
        outcome = await self._receipts.submit(ReceiptOp(person_id, notice_id, what, position_id, reply))
        if outcome.changed:
            self._dirty.add(notice_id)
        return outcome.states

    async def close(self) -> None:
        """Finish the queued receipt changes (graceful shutdown)."""
        await self._receipts.close()

    # --------------------------------------------------------------- recall
    async def recall(self, actor_person_id: int, notice_id: int) -> datetime:
        """Recall a notice within the window; recipients get ``notice.recalled``. Idempotent.

        Raises:
            NotFound: no such notice, or the actor is not on its sender side.
            Conflict: the recall window has passed.
        """

        async def change(tx: Txn) -> datetime:
            conn, now = tx.conn, tx.now
            row = await self._access_sent(conn, actor_person_id, notice_id, acting=True)
            if row.recalled_at is not None:
                return row.recalled_at  # type: ignore[no-any-return]
            if now - row.created_at > self.config.recall_window:
                raise Conflict(
                    "the recall window has passed",
                    data={"notice_id": notice_id, "window_s": self.config.recall_window.total_seconds()},
                )
            await conn.execute(update(notices).where(notices.c.id == notice_id).values(recalled_at=now))
            await conn.execute(
                update(notice_ding_steps)
                .where(notice_ding_steps.c.notice_id == notice_id, notice_ding_steps.c.done_at.is_(None))
                .values(done_at=now, last_error="recalled")
            )
            # Recipients whose notice.new is not written yet never get it: their
            # receipts are claimed here without an event (the relay then finds
            # nothing to claim), and they get no recall either. Everyone whose
            # notice.new was written gets notice.recalled after it.
            r = notice_receipts.c
            unsent = {
                int(p[0])
                for p in await conn.execute(
                    update(notice_receipts)
                    .where(r.notice_id == notice_id, r.fanned_out.is_(False))
                    .values(fanned_out=True)
                    .returning(r.person_id)
                )
            }
            people = [
                int(p[0])
                for p in await conn.execute(select(r.person_id).where(r.notice_id == notice_id).distinct())
                if int(p[0]) not in unsent
            ]
            body = NoticeRecalled(notice_id=notice_id, recalled_at=now)
            # One event each: a sender who addressed a unit of their own is a recipient too (until
            # 2026-12-05 they got notice.recalled twice, 河北 audit).
            side = self._sender_side(int(row.sender_person_id), int(row.sender_position_id))
            tx.emit(shared_event("notice.recalled", body, sorted({*people, *side})))
            return now

        at = await self._uow.run(change)
        self._dirty.discard(notice_id)
        return at

    # ---------------------------------------------------- reminders, progress

    async def remind(self, actor_person_id: int, notice_id: int, *, unit: int | str, missing: str = "ack") -> int:
        """Send ``notice.remind`` now to the recipients under ``unit`` who still owe; returns how many.

        Raises:
            NotFound: no such notice or unit, or not on its sender side.
            Conflict: the notice was recalled.
            RateLimited: everyone still owing under ``unit`` was reminded by hand less than a minute ago.
        """
        if missing not in ("read", "ack"):
            raise BadRequest("missing must be read or ack", data={"field": "missing"})
        index = self._index()
        u = index.unit(unit)

        async def change(tx: Txn) -> int:
            row = await self._access_sent(tx.conn, actor_person_id, notice_id, acting=True)
            if row.recalled_at is not None:  # final, unlike the minute: the 409 a receipt call answers
                raise Conflict("the notice was recalled", data={"notice_id": notice_id, "recalled": True})
            owed = missing if row.ack_required else "read"
            found = await reminder_events(tx.conn, index, row, u, owed, actor_person_id, tx.now)
            if not found.events and found.recent:  # rolls back: nothing marked, nothing sent
                raise RateLimited(
                    "everyone still owing here was reminded less than a minute ago",
                    data={"retry_after": int(REMIND_INTERVAL)},
                )
            evs = found.events
            # A reminder right after the send can come before the fan-out reached someone: write
            # their notice.new first, in this transaction, so no stream has the reminder first
            # (an offline recipient's sync showed notice.remind, then notice.new).
            targets = sorted({p for e in evs for p in e.recipients})
            await self.fanout.relay.write_owed(tx, head_of_row(row), targets, index)
            tx.emit(*evs)
            return sum(len(e.recipients) for e in evs)

        return await self._uow.run(change)

    def _sender_side(self, sender_person_id: int, sender_position_id: int) -> list[int]:
        """Who is told of a notice's progress and recall: its sender and whoever holds the sender position
        now (primary, deputy, acting), as both read its progress (docs/notices.md "Access").

        Why the holders: the notice stays with the position after a handover, and its successor reads
        the dashboard and may recall and remind — but the events went to the sender alone, so the
        successor's dashboard stood still and their devices never heard of a recall they made.
        """
        index = self._index()
        slot = index.find_slot(sender_position_id)
        holders = index.current_holders(slot) if slot >= 0 else set()
        return sorted({sender_person_id, *holders})

    async def flush_progress(self) -> int:
        """Send one coalesced ``notice.progress`` event per changed notice to its sender side (``_sender_side``).

        Call periodically (e.g. every ``config.progress_interval`` seconds). A notice
        whose last event from this process is younger than the interval stays
        dirty until a later flush. Returns the number of events appended.
        """
        mono = self._clock.monotonic()
        due = [n for n in self._dirty if mono - self._last_progress.get(n, -1e18) >= self.config.progress_interval]
        if not due:
            return 0

        async def change(tx: Txn) -> int:
            conn = tx.conn
            totals = await receipt_totals(conn, due)
            senders = {
                int(i): self._sender_side(int(person), int(position))
                for i, person, position in await conn.execute(
                    select(notices.c.id, notices.c.sender_person_id, notices.c.sender_position_id).where(
                        notices.c.id.in_(due)
                    )
                )
            }
            evs = []
            for n in sorted(senders):
                r, d, rd, a = totals.get(n, (0, 0, 0, 0))
                body = NoticeProgress(notice_id=n, receipts=r, delivered=d, read=rd, acked=a)
                evs.append(shared_event("notice.progress", body, senders[n]))
            tx.emit(*evs)
            return len(evs)

        # Taken out of the dirty set before the totals are read: a receipt change that
        # commits while this flush runs marks its notice dirty again, for the next flush.
        # (Discarded after the flush, such a change was never reported: the sender's
        # progress stayed short of the last reads until some later change.)
        self._dirty.difference_update(due)
        try:
            emitted = await self._uow.run(change)
        except BaseException:
            self._dirty.update(due)
            raise
        for n in due:
            self._last_progress[n] = mono
        return emitted

    # ------------------------------------------------------------- handover
    async def handed_over(
        self, conn: AsyncConnection, position_id: int, previous: list[int], new_person_id: int, now: datetime
    ) -> tuple[int, Callable[[], None] | None]:
        """The ``OrgHooks.handed`` hook: the unread receipts owed through ``position_id`` by its previous
        holders pass to the new one, in the handover's own transaction.

        Why there and not after the commit: the holders read after it could be stale — with two
        handovers of one position at once, the notices went to the holder the second one had just
        replaced (广西 audit). Returns how many moved, and the wake-ups to run after the commit.
        """
        index = self._index()
        tx = self._uow.join(conn, now)
        moved = 0
        for old in previous:
            if old == new_person_id:
                continue
            evs, n = await unread_transfer_events(conn, index, head_of_row, position_id, old, new_person_id, now)
            if n:
                tx.emit(*evs)
                moved += n
        if not moved:
            return 0, None
        await self._uow.finish(tx)
        return moved, lambda: self._uow.announce(tx)

    async def transfer_unread(self, position_id: int, old_person_id: int, new_person_id: int) -> int:
        """Move the unread receipts owed through ``position_id`` by ``old_person_id`` to the new holder.

        Its own transaction (``handed_over`` is the handover's). The moved receipts keep
        ``previous_person_id``/``transferred_at``; the new holder gets ``notice.new``
        for each notice (labelled), the old one ``notice.transferred``. Returns the count moved.
        """
        if old_person_id == new_person_id:
            return 0
        index = self._index()

        async def change(tx: Txn) -> int:
            evs, moved = await unread_transfer_events(
                tx.conn, index, head_of_row, position_id, old_person_id, new_person_id, tx.now
            )
            if moved:
                tx.emit(*evs)
            return moved

        return await self._uow.run(change)


def _stored(row: Row[Any]) -> SendResult:
    return SendResult(
        int(row.id),
        row.created_at,
        True,
        int(row.audience_positions),
        int(row.audience_persons),
        int(row.receipt_count),
        int(row.audience_unfilled or 0),
    )


def notice_audit(
    index: OrgIndex, notice_id: int, sender: int, position: int, c: Compose, audience: Audience, receipts: int
) -> AuditEntry:
    """The audit entry of a notice sent: actor, acting position, selector and audience size (issue 10 item 7)."""
    unit_id, path = unit_path_of(index, index.position_unit(index.slot(position)))
    detail = {
        "notice_id": notice_id, "selector": c.selector_json, "priority": c.priority,
        "positions": len(audience.positions), "persons": len(audience.persons), "receipts": receipts,
    }  # fmt: skip
    return AuditEntry("notice.sent", sender, position, "ok", unit_id, path, detail)
