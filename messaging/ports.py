"""What the messaging domain asks of the shell, declared here so the domain never imports it.

The shell (``zzd``) implements these and hands them in through constructors
in its composition root (``zzd/services.py``); domain tests hand in test
doubles only where no socket exists. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from messaging.wakeup import EventGroup
from org_tree.index import OrgIndex

__all__ = ["CONTROL_CHANNEL", "IndexProvider", "LocalDelivery", "Notify", "PhotoLinker"]

#: Called after commit with the wake-up groups to deliver (this process's sockets and the
#: broker); must not block.
Notify = Callable[[list[EventGroup]], None]

#: Returns this process's current org index (e.g. ``lambda: holder.index``).
IndexProvider = Callable[[], OrgIndex]

#: The broker channel of control messages every process acts on: session revocations,
#: disabled accounts (the gateway's) and committed notices (``{"t": "notice_committed"}``).
CONTROL_CHANNEL = "control"


class LocalDelivery(Protocol):
    """The sockets of this process, as the domain sees them (the gateway's ``ConnectionHub``)."""

    def person_ids(self) -> list[int]:
        """The persons with at least one socket on this process."""
        ...

    def deliver(self, groups: list[EventGroup]) -> None:
        """Offer freshly committed events to this process's sockets (never blocks)."""
        ...

    async def catch_up(self, person_ids: Sequence[int]) -> None:
        """Have these persons' sockets here read what their streams committed beyond what they have.

        For events another process committed and handed only to its own sockets (a connected-first
        notice write); the safety poll would find them too, but seconds later.
        """
        ...


class PhotoLinker(Protocol):
    """Links the uploads among a message's or notice's attachments to it (the attachment service's
    ``AttachmentLinks``, handed in by the shell), so its readers may download them."""

    async def link_owned(
        self, conn: AsyncConnection, refs: Sequence[str], *, person_id: int, ref_kind: str, ref_id: int
    ) -> None:
        """Inside the caller's transaction: link the refs that are this person's uploads; skip the rest."""
        ...
