"""Photos in messages: a message's attachments that are uploads become readable by its readers.

``attachments`` of a message are opaque references (docs/conversations.md). Those that are the
digest of a file the sender uploaded are linked to the message (``ref_kind = "message"``) in the
message's own transaction, through the ``PhotoLinker`` port (the attachment service, wired in by
the shell: conversations do not import attachments). The attachment service then asks
``can_see_message`` whether a person downloading the file may read that message — so exactly the
readers of the message (a former holder only within their period) see its photos.
"""

from __future__ import annotations

from sqlalchemy import select

from kernel.db.database import Database
from kernel.errors import NotFound
from messaging.conversations.access import access
from messaging.ports import PhotoLinker
from messaging.schema import messages

__all__ = ["MESSAGE_REF", "PhotoLinker", "can_see_message"]

MESSAGE_REF = "message"


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
