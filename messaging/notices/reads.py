"""A notice as its recipients and its sender side read it: the notice, progress, pending, receipt history.

Why a module of its own: these are the reads of a sent notice, and nothing here writes
(``NoticeService`` in ``service.py`` sends, records receipts, recalls, reminds and hands
over). ``NoticeService`` inherits ``NoticeReads``, so callers keep calling the service.

Access: a notice's progress and recall belong to its sender person and to the
current holders of the position it was sent as; receipts belong to their
recipients. Anyone else gets ``NotFound``, the same as for a missing notice.
The check (``_access_sent``) is here; recall and remind use it too.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.database import Database
from kernel.errors import BadRequest, Forbidden, NotFound
from kernel.wire import iso
from messaging.notices.model import PendingPage, Progress, Totals, UnitProgress
from messaging.notices.pending import pending_page
from messaging.notices.relay import head_of_row
from messaging.notices.rollup import lowest_common_unit, rollup
from messaging.notices.schema import notice_receipts, notices
from messaging.notices.storage import receipts_of, unit_counts
from messaging.ports import IndexProvider
from org_tree.index import OrgIndex

__all__ = ["MAX_PENDING_PAGE", "NoticeReads"]

#: The most a page lists: the limit the API documents and takes (until 2026-12-05 pages were cut at 200).
MAX_PENDING_PAGE = 500


def _not_found(notice_id: int) -> NotFound:
    return NotFound("no such notice", data={"notice_id": notice_id})


class NoticeReads:
    """The reads of a sent notice (``get``, ``progress``, ``pending``, ``receipt_history``) and its access check.

    Args:
        db: the database.
        index_provider: returns the current ``OrgIndex`` of this process.
    """

    def __init__(self, db: Database, index_provider: IndexProvider) -> None:
        self._db = db
        self._index = index_provider

    async def get(self, actor_person_id: int, notice_id: int) -> dict[str, Any]:
        """The notice with the actor's own receipts (recipient) or its numbers (sender side)."""
        async with self._db.read() as conn:
            row = (await conn.execute(select(notices).where(notices.c.id == notice_id))).first()
            if row is None:
                raise _not_found(notice_id)
            mine = await receipts_of(conn, notice_id, actor_person_id)
        is_sender = self._is_sender_side(row, actor_person_id)
        if not mine and not is_sender:
            raise _not_found(notice_id)
        out = {
            **head_of_row(row).as_dict(),
            "body": row.body,
            "attachments": json.loads(row.attachments),
            "recalled_at": iso(row.recalled_at),
            "receipts": [r.to_dict() for r in mine],
        }
        if is_sender:
            out.update(
                selector=json.loads(row.selector),
                audience={"positions": row.audience_positions, "persons": row.audience_persons},
                receipt_count=row.receipt_count,
            )
        return out

    async def can_see(self, person_id: int, notice_id: int) -> bool:
        """Whether the person may open the notice, and so download its photos (the attachment service's check).

        Recipients and the sender side, as ``get``; a recalled notice's photos go with it.
        """
        try:
            seen = await self.get(person_id, notice_id)
        except NotFound:
            return False
        return seen["recalled_at"] is None

    async def progress(self, actor_person_id: int, notice_id: int, *, unit: int | str | None = None) -> Progress:
        """Totals and a rollup per child of ``unit`` (default: the audience's lowest common unit).

        Raises:
            NotFound: no such notice, not on its sender side, or no such unit.
        """
        index = self._index()
        async with self._db.read() as conn:
            row = await self._access_sent(conn, actor_person_id, notice_id)
            counts = await unit_counts(conn, notice_id)
        notice_total = Totals(*(sum(c[i] for c in counts) for i in range(1, 5)))
        parent = index.unit(unit) if unit is not None else lowest_common_unit(index, (c[0] for c in counts))
        if parent is None:
            by_child: tuple[UnitProgress, ...] = ()
            elsewhere = notice_total.receipts
            total = UnitProgress(0, "", "", 0, 0, 0, 0)
        else:
            # The unit's own numbers are its subtree's (the sum of its rows), never the notice's:
            # a unit the notice did not address shows zeros under its own name (issue 12 item 5).
            by_child, elsewhere = rollup(index, parent, counts)
            own = [sum(getattr(c, f) for c in by_child) for f in ("receipts", "delivered", "read", "acked")]
            total = UnitProgress(index.unit_id(parent), index.unit_code(parent), index.unit_name(parent), *own)
        recalled = row.recalled_at is not None
        return Progress(notice_id, recalled, bool(row.ack_required), total, by_child, elsewhere, notice_total)

    async def pending(
        self,
        actor_person_id: int,
        notice_id: int,
        *,
        unit: int | str,
        missing: str = "read",
        after: int | None = None,
        limit: int = 50,
    ) -> PendingPage:
        """Recipients in ``unit``'s subtree who have not read (``missing="read"``) or acknowledged (``"ack"``).

        Keyset-paged by receipt id: pass ``next_after`` back as ``after``.
        """
        if missing not in ("read", "ack"):
            raise BadRequest("missing must be read or ack", data={"field": "missing"})
        limit = max(1, min(limit, MAX_PENDING_PAGE))
        index = self._index()
        u = index.unit(unit)
        async with self._db.read() as conn:
            await self._access_sent(conn, actor_person_id, notice_id)
            return await pending_page(conn, index, notice_id, u, missing, after, limit)

    async def receipt_history(self, actor_person_id: int, notice_id: int, position_id: int) -> list[dict[str, Any]]:
        """Receipts of one addressed position with who owes them and who owed them before (sender side)."""
        async with self._db.read() as conn:
            await self._access_sent(conn, actor_person_id, notice_id)
            rows = (
                await conn.execute(
                    select(notice_receipts)
                    .where(notice_receipts.c.notice_id == notice_id, notice_receipts.c.position_id == position_id)
                    .order_by(notice_receipts.c.id)
                )
            ).all()
        return [
            {
                "person_id": int(x.person_id),
                "previous_person_id": x.previous_person_id,
                "transferred_at": iso(x.transferred_at),
                "read_at": iso(x.read_at),
                "acked_at": iso(x.acked_at),
            }
            for x in rows
        ]

    # ---------------------------------------------------------------- access
    def _is_sender_side(self, row: Row[Any], actor_person_id: int) -> bool:
        if int(row.sender_person_id) == actor_person_id:
            return True
        return self._index().holds(actor_person_id, int(row.sender_position_id))

    async def _access_sent(
        self, conn: AsyncConnection, actor_person_id: int, notice_id: int, *, acting: bool = False
    ) -> Row[Any]:
        """The notice for its sender side; ``acting`` (recall, remind): only while holding its sender position.

        Why: the notice stays with the position after a handover. Its former holder still
        reads what they sent, but recalling or reminding in the position's name is the
        position's authority, which went to the new holder (docs/notices.md "Access").
        """
        row = (await conn.execute(select(notices).where(notices.c.id == notice_id))).first()
        if row is None:
            raise _not_found(notice_id)
        if not self._is_sender_side(row, actor_person_id):
            raise _not_found(notice_id)
        if acting:
            _require_sender_position(self._index(), row, actor_person_id)
        return row


def _require_sender_position(index: OrgIndex, row: Row[Any], actor_person_id: int) -> None:
    """Refuse a former holder acting in the name of a notice's sender position (``Forbidden``)."""
    position = int(row.sender_position_id)
    if not index.holds(actor_person_id, position):
        raise Forbidden(
            "the notice was sent as a position you no longer hold",
            data={"notice_id": int(row.id), "position_id": position},
        )
