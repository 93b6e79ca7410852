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

from kernel.errors import ZzdError

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
    """Turns "written to the recipient" into ``delivered`` receipts, in the background."""

    def __init__(self, mark: Callable[[int, int], Awaitable[object]]) -> None:
        self._mark = mark
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False

    def written(self, person_id: int, notice_id: int) -> None:
        """The notice's event reached ``person_id``'s device (called after the write)."""
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._record(person_id, notice_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _record(self, person_id: int, notice_id: int) -> None:
        try:
            await self._mark(person_id, notice_id)
        except ZzdError:
            pass  # recalled meanwhile, or the receipt moved with a handover: nothing to record
        except Exception:
            logger.exception("delivered receipt for notice %s, person %s not recorded", notice_id, person_id)

    async def close(self) -> None:
        """Record what was written before shutdown, then refuse new marks."""
        self._closed = True
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
