""" "Delivered" means a device has the notice: recorded when the server wrote it to an open socket.

Which of the two possible signals, and why: the client may say so itself
(``notice_delivered`` frame), but a client that never sends it (a browser tab,
a third-party client written from the docs) would leave ``delivered`` equal to
``read``, which is what progress showed before (issue 12 item 5: 300 received,
``delivered: 225``). The server knows without the client's help when it has
handed the event's frame to an open WebSocket (``notice.new``, or
``notice.remind`` for an urgent notice), and when a page of ``GET
/api/v1/sync`` carrying it was answered. Both are recorded here, after the
write, so a socket that died first records nothing; the client's own
``notice_delivered`` still works and is idempotent with these.

The marks go through the receipt writer's batches (one transaction for up to
2,048), off the socket's write path: the socket never waits on the database.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

__all__ = ["DeliveryRecorder", "notice_in_frame"]

_NOTICE_EVENT = re.compile(r'"kind":"notice\.(?:new|remind)","data":\{"notice_id":(\d+)')


def notice_in_frame(frame: str) -> int | None:
    """The notice id of an event frame that brings a notice to its recipient, else None (cheap for others)."""
    if frame.find('"kind":"notice.', 0, 80) < 0:
        return None
    m = _NOTICE_EVENT.search(frame, 0, 160)
    return int(m.group(1)) if m else None


class DeliveryRecorder:
    """Turns "written to the recipient" into ``delivered`` receipts, in the background.

    Marks made while the event loop is busy (a province-wide notice offered to
    thousands of sockets in one pass) go to the receipt writer together, from
    one task, instead of one task per socket.
    """

    def __init__(self, mark_many: Callable[[list[tuple[int, int]]], Awaitable[object]]) -> None:
        self._mark_many = mark_many
        self._waiting: list[tuple[int, int]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def written(self, person_id: int, notice_id: int) -> None:
        """The notice's event reached ``person_id``'s device (called after the write)."""
        if self._closed:
            return
        self._waiting.append((person_id, notice_id))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._record(), name="notice-delivered")

    async def _record(self) -> None:
        while self._waiting:
            marks, self._waiting = self._waiting, []
            try:
                await self._mark_many(marks)
            except Exception:
                logger.exception("%d delivered receipts not recorded", len(marks))

    async def close(self) -> None:
        """Record what was written before shutdown, then refuse new marks."""
        self._closed = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
