"""Links from what uses uploads (a report, a task event, a message) to the files, in the writer's transaction.

Why apart from the upload service: the services that link files (tasks,
reports, conversations) are built before the upload service, which needs
their visibility checks (``can_see``) at construction; the links themselves
are rows written inside each writer's own transaction and need nothing but
the connection. So the composition root builds this store first, hands it
to the writers, and then builds ``AttachmentService`` with every ref kind's
visibility check: no registration after construction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.dialect import insert_ignore
from kernel.errors import BadRequest, ErrorCode
from messaging.attachments.schema import attachment_links, attachments
from messaging.attachments.store import is_digest

logger = logging.getLogger(__name__)

__all__ = ["MAX_LINKS_PER_REF", "UPLOADER", "AttachmentLinks", "CanSee"]

#: The ref kind recording who uploaded a file (ref_id = person id); not linkable by callers.
UPLOADER = "uploader"
#: Most files one ref may link (a report's photos, a transition's evidence).
MAX_LINKS_PER_REF = 20

#: ``can_see(person_id, ref_id)``: whether that person may see the ref (and so the files it links).
CanSee = Callable[[int, int], Awaitable[bool]]


class AttachmentLinks:
    """Record and list which refs use which uploads (``attachment_links``), inside the caller's transaction."""

    async def link(
        self, conn: AsyncConnection, digests: Sequence[str], *, person_id: int, ref_kind: str, ref_id: int
    ) -> None:
        """Record that (ref_kind, ref_id) uses these uploads.

        Linking again is a no-op. Nothing is linked unless every digest was
        uploaded by ``person_id``.

        Raises:
            BadRequest: ``unknown_attachment`` naming the digests this person did not upload.
        """
        if ref_kind == UPLOADER or not ref_kind or len(ref_kind) > 32:
            raise ValueError(f"ref kind {ref_kind!r} cannot be linked")
        wanted = list(dict.fromkeys(digests))
        if not wanted:
            return
        if len(wanted) > MAX_LINKS_PER_REF:
            raise BadRequest(f"at most {MAX_LINKS_PER_REF} attachments", data={"max": MAX_LINKS_PER_REF})
        owned = set(await _uploaded_by(conn, [d for d in wanted if isinstance(d, str) and is_digest(d)], person_id))
        missing = [d for d in wanted if d not in owned]
        if missing:
            raise BadRequest(
                "attachments must be uploaded by you first",
                code=ErrorCode.UNKNOWN_ATTACHMENT,
                data={"digests": [str(d)[:64] for d in missing[:MAX_LINKS_PER_REF]]},
            )
        stmt = insert_ignore(conn, attachment_links, ["digest", "ref_kind", "ref_id"])
        await conn.execute(stmt, [{"digest": d, "ref_kind": ref_kind, "ref_id": ref_id} for d in wanted])

    async def link_owned(
        self, conn: AsyncConnection, refs: Sequence[object], *, person_id: int, ref_kind: str, ref_id: int
    ) -> None:
        """Like ``link`` for the refs that are digests of this person's uploads; other refs are skipped.

        For references that may be opaque (a chat message's ``attachments``), where an unknown
        ref is not an error but simply not a file of ours.
        """
        # Strings first: a notice's references may be objects, which are no dict keys (they made it 500).
        digests = list(dict.fromkeys(r for r in refs if isinstance(r, str) and is_digest(r)))
        owned = await _uploaded_by(conn, digests, person_id)
        if owned:
            await self.link(conn, owned, person_id=person_id, ref_kind=ref_kind, ref_id=ref_id)

    async def linked(self, conn: AsyncConnection, ref_kind: str, ref_id: int) -> list[dict[str, Any]]:
        """The files a ref uses, as ``{digest, size, content_type}`` (digest order)."""
        rows = await conn.execute(
            select(attachments.c.digest, attachments.c.size, attachments.c.content_type)
            .join(attachment_links, attachment_links.c.digest == attachments.c.digest)
            .where(attachment_links.c.ref_kind == ref_kind, attachment_links.c.ref_id == ref_id)
            .order_by(attachments.c.digest)
        )
        return [{"digest": d, "size": s, "content_type": t} for d, s, t in rows]


async def _uploaded_by(conn: AsyncConnection, digests: list[str], person_id: int) -> list[str]:
    """Those of ``digests`` (well-formed digests) that ``person_id`` uploaded."""
    if not digests:
        return []
    rows = await conn.execute(
        select(attachment_links.c.digest).where(
            attachment_links.c.digest.in_(digests),
            attachment_links.c.ref_kind == UPLOADER,
            attachment_links.c.ref_id == person_id,
        )
    )
    return [str(d) for (d,) in rows]
