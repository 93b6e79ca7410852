"""Chat paths of ordinary accounts found by the outside audit on 湖南 (province 43), on both backends.

Each test is the exchange the audit recorded against two ``zzd serve`` processes on PostgreSQL and
Redis, cut down to one served app: the answer is what docs/protocol.md promises, and nothing else
is written.
"""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from messaging.schema import messages
from tests.client import login, new_people
from tests.conftest import RunningServer
from tests.org_server import auth


async def test_a_retried_direct_message_to_someone_else_is_the_first_message(server: RunningServer) -> None:
    """A ``client_msg_id`` reused with another recipient answered ``500`` on PostgreSQL when that
    recipient had never received an event: nothing was stored, so the batch appended no events, and
    the statement that appends none was ``WITH SELECT 1``. docs/protocol.md: the same sender and id
    always return the first message, "whatever the body".
    """
    s = server.services_obj  # type: ignore[attr-defined]
    (sender, lg), (first, _), (fresh, _) = await new_people(s, 3)
    tok = (await login(server.http, lg))["access_token"]
    async with httpx.AsyncClient(base_url=server.http, headers=auth(tok)) as h:
        made = await h.post("/api/v1/messages", json={"to": first, "client_msg_id": "dm-1", "body": "你好"})
        assert made.status_code == 201, made.text
        again = await h.post("/api/v1/messages", json={"to": fresh, "client_msg_id": "dm-1", "body": "别的"})
        assert again.status_code == 200, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == {**made.json(), "duplicate": True, "seq": None}
    async with s.db.read() as conn:
        stored = (await conn.execute(select(func.count()).where(messages.c.sender_id == sender))).scalar_one()
    assert stored == 1
