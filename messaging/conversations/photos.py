"""Photos in messages: a message's attachments that are uploads become readable by its readers.

``attachments`` of a message are opaque references (docs/conversations.md). Those that are the
digest of a file the sender uploaded are linked to the message (``attachment_links`` with
``ref_kind = "message"``) in the message's own transaction, and the attachment service asks
``can_see_message`` whether a person downloading the file may read that message — so exactly
the readers of the message (a former holder only within their period) can see its photos.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.db.database import Database
from kernel.db.dialect import insert_ignore
from kernel.errors import NotFound
from messaging.attachments.schema import attachment_links
from messaging.attachments.service import UPLOADER
from messaging.attachments.store import is_digest
from messaging.conversations.access import access
from messaging.schema import messages

__all__ = ["MESSAGE_REF", "can_see_message", "link_message_photos"]

MESSAGE_REF = "message"


async def link_message_photos(conn: AsyncConnection, sender_id: int, message_id: int, refs: Sequence[str]) -> None:
    """Link the refs that are the sender's own uploads; other refs stay opaque."""
    digests = [r for r in dict.fromkeys(refs) if is_digest(r)]
    if not digests:
        return
    owned = await conn.execute(
        select(attachment_links.c.digest).where(
            attachment_links.c.digest.in_(digests),
            attachment_links.c.ref_kind == UPLOADER,
            attachment_links.c.ref_id == sender_id,
        )
    )
    rows = [{"digest": d, "ref_kind": MESSAGE_REF, "ref_id": message_id} for (d,) in owned]
    if rows:
        await conn.execute(insert_ignore(conn, attachment_links, ["digest", "ref_kind", "ref_id"]), rows)


async def can_see_message(db: Database, person_id: int, message_id: int) -> bool:
    """Whether the person may read the message (and so its photos)."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(messages.c.conversation_id, messages.c.created_at, messages.c.recalled_at).where(
                    messages.c.id == message_id
                )
            )
        ).first()
        if row is None or row[2] is not None:  # a recalled message's photos go with it
            return False
        try:
            acc = await access(conn, person_id, int(row[0]))
        except NotFound:
            return False
        return acc.sees(row[1])
