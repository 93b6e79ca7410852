"""Chat paths of ordinary accounts found by the outside audit on 湖南 (province 43), on both backends.

Each test is the exchange the audit recorded against two ``zzd serve`` processes on PostgreSQL and
Redis, cut down to one served app: the answer is what docs/protocol.md promises, and nothing else
is written.
"""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from messaging.schema import messages
from tests.client import connect_as, login, new_people
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


async def test_a_direct_message_may_not_take_a_system_notes_key(server: RunningServer) -> None:
    """``sys:…`` keys are the system notes' (``sys:<conversation>:v<org version>:m``, written as a
    member): a conversation post refused them, but ``POST /api/v1/messages`` and the ``send`` frame
    with ``to`` stored them, so a member could take the key of a note about to be written as them
    and the note, with the ``conversation.left`` events sent beside it, was silently dropped.
    """
    s = server.services_obj  # type: ignore[attr-defined]
    (sender, lg), (peer, _) = await new_people(s, 2)
    tok = (await login(server.http, lg))["access_token"]
    refusal = {
        "code": "bad_request",
        "message": "client_msg_id may not start with sys:",
        "data": {"field": "client_msg_id"},
    }
    async with httpx.AsyncClient(base_url=server.http, headers=auth(tok)) as h:
        r = await h.post("/api/v1/messages", json={"to": peer, "client_msg_id": "sys:9:v12:m", "body": "占位"})
        assert (r.status_code, r.json()["error"]) == (400, refusal), r.text
    c = await connect_as(server, lg)
    try:
        reply = await c.request({"type": "send", "to": peer, "client_msg_id": "sys:9:created", "body": "占位"})
    finally:
        await c.close()
    assert reply["type"] == "error", reply
    assert {k: reply[k] for k in ("code", "message", "data")} == refusal
    async with s.db.read() as conn:
        stored = (await conn.execute(select(func.count()).where(messages.c.sender_id == sender))).scalar_one()
    assert stored == 0


async def test_a_mention_names_someone(server: RunningServer) -> None:
    """A message's ``mention_persons`` / ``mention_positions`` were stored as sent, ids no person or
    position has included, while a group's new members of the same ids answer ``404``. Now a mention
    is checked as a member is: ``404 not_found`` naming the field and the ids, nothing stored.
    """
    s = server.services_obj  # type: ignore[attr-defined]
    (sender, lg), (peer, _) = await new_people(s, 2)
    tok = (await login(server.http, lg))["access_token"]
    async with httpx.AsyncClient(base_url=server.http, headers=auth(tok)) as h:
        group = await h.post("/api/v1/groups", json={"title": "网格群", "person_ids": [peer]})
        assert group.status_code == 201, group.text
        say = f"/api/v1/conversations/{group.json()['id']}/messages"
        async with s.db.read() as conn:
            before = (await conn.execute(select(func.count()).select_from(messages))).scalar_one()
        r = await h.post(say, json={"client_msg_id": "m-1", "body": "@谁", "mention_persons": [peer, 9_000_000_001]})
        assert r.status_code == 404, r.text
        assert r.json()["error"] == {
            "code": "not_found",
            "message": "no such person",
            "data": {"field": "mention_persons", "person_ids": [9_000_000_001]},
        }
        r = await h.post(say, json={"client_msg_id": "m-2", "body": "@岗位", "mention_positions": [9_000_000_002]})
        assert r.status_code == 404, r.text
        assert r.json()["error"]["data"] == {"field": "mention_positions", "position_ids": [9_000_000_002]}
        async with s.db.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(messages))).scalar_one() == before
        r = await h.post(say, json={"client_msg_id": "m-3", "body": "@网格乙", "mention_persons": [peer]})
        assert r.status_code == 201, r.text


async def test_the_edit_and_recall_frames_answer_every_field_as_rest_does(server: RunningServer) -> None:
    """``PATCH /api/v1/messages/{id}`` and ``…/recall`` answer all five fields of ``MessageChanged``
    (``"recalled_at": null`` after an edit, ``"body": null`` after a recall); the ``edit`` and
    ``recall`` frames left those out, so a client reading ``data.body`` of a recall got nothing
    over the socket and ``null`` over REST. Now the frames answer as REST does."""
    s = server.services_obj  # type: ignore[attr-defined]
    (_, lg), (peer, _) = await new_people(s, 2)
    tok = (await login(server.http, lg))["access_token"]
    async with httpx.AsyncClient(base_url=server.http, headers=auth(tok)) as h:
        gid = (await h.post("/api/v1/groups", json={"title": "网格群", "person_ids": [peer]})).json()["id"]
        say = f"/api/v1/conversations/{gid}/messages"
        by_rest = (await h.post(say, json={"client_msg_id": "r-1", "body": "一"})).json()["message_id"]
        by_frame = (await h.post(say, json={"client_msg_id": "f-1", "body": "二"})).json()["message_id"]
        rest_edit = (await h.patch(f"/api/v1/messages/{by_rest}", json={"body": "一改"})).json()
        rest_recall = (await h.post(f"/api/v1/messages/{by_rest}/recall")).json()
    c = await connect_as(server, lg)
    try:
        frame_edit = (await c.request({"type": "edit", "message_id": by_frame, "body": "二改"}))["data"]
        frame_recall = (await c.request({"type": "recall", "message_id": by_frame}))["data"]
    finally:
        await c.close()
    fields = {"message_id", "conversation_id", "edited_at", "body", "recalled_at"}
    assert set(rest_edit) == set(rest_recall) == fields
    assert set(frame_edit) == fields and (frame_edit["body"], frame_edit["recalled_at"]) == ("二改", None)
    assert set(frame_recall) == fields and frame_recall["body"] is None
    assert frame_recall["edited_at"] == frame_edit["edited_at"]
