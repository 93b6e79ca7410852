"""The AsyncAPI document of /ws against the code and against real traffic.

Static: every client frame type, every event kind a writer can emit (found in
the source) and every close code has its entry, and every ``$ref`` resolves.
Live: a chat, a group, a notice and a task are driven through the public API
on a real server; every event the people involved receive (their whole
streams, read back through ``/api/v1/sync``) and the WebSocket frames of one
client are validated against the served document's schemas.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs  # comes with schemathesis (dev), pinned in requirements.lock
import pytest

from tests.client import Client
from tests.conftest import RunningServer
from tests.org_server import auth, seat
from zzd.gateway.asyncapi import CLOSE_CODES, EVENTS, build_asyncapi
from zzd.gateway.closecodes import Close
from zzd.gateway.frames import FRAME_TYPES

ROOT = Path(__file__).resolve().parents[1]
_EMIT = re.compile(r'(?:NewEvent|notice_events|shared_event|append_bulk)\(\s*(?:conn,\s*)?"([a-z_]+\.[a-z_]+)"')
_KIND = re.compile(r'kind = "([a-z_]+\.[a-z_]+)" if')


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_covers_frames_events_and_close_codes() -> None:
    doc = build_asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    messages = doc["channels"]["ws"]["messages"]
    client_types = set()
    for msg in messages.values():
        payload = _resolve(doc, msg["payload"]["$ref"])
        t = payload["properties"]["type"]
        client_types |= set(t.get("enum", [t.get("const")]))
    assert FRAME_TYPES <= client_types, FRAME_TYPES - client_types
    emitted = set()
    for path in (ROOT / "messaging").rglob("*.py"):
        text = path.read_text()
        emitted |= set(_EMIT.findall(text)) | set(_KIND.findall(text))
    emitted.discard("thing.changed")  # a docstring example in messaging/unit_of_work.py
    assert emitted and emitted <= set(EVENTS), emitted - set(EVENTS)
    assert {int(c) for c in Close} <= set(CLOSE_CODES)
    assert {c["code"] for c in doc["components"]["x-close-codes"]} == set(CLOSE_CODES)
    for ref in _refs(doc):
        _resolve(doc, ref)  # raises KeyError when dangling
    for op in doc["operations"].values():
        assert op["channel"]["$ref"] in ("#/channels/ws", "#/channels/appStream")


def _validator(doc: dict[str, Any], message_key: str) -> jsonschema_rs.Draft202012Validator:
    schema = {**doc["channels"]["ws"]["messages"][message_key]["payload"], "components": doc["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


def _check_event(doc: dict[str, Any], frame: dict[str, Any]) -> None:
    kind = frame["kind"]
    assert kind in EVENTS, f"event kind {kind} is not in the AsyncAPI document"
    EVENTS[kind].model_validate(frame["data"])  # extra=forbid: an undocumented field fails here
    errors = list(_validator(doc, "Event_" + kind.replace(".", "_")).iter_errors(frame))
    assert not errors, (kind, [e.message for e in errors[:3]], frame)


async def test_real_events_and_frames_match_the_served_document(org_server: RunningServer) -> None:
    rs = org_server
    mgr_id, _, head_pos, mgr_tok = await seat(rs, "990101", "county_head")
    w_id, _, w_pos, w_tok = await seat(rs, "990101001001001", "grid_worker")
    async with httpx.AsyncClient(base_url=rs.http) as h:
        doc = (await h.get("/asyncapi.json")).json()
        assert doc == build_asyncapi()
    worker = await Client.connect(rs.ws, w_tok)
    hello_errors = list(_validator(doc, "HelloOk").iter_errors({"type": "ok", "ref": "h", "data": worker.hello}))
    assert not hello_errors, [e.message for e in hello_errors]
    m, w = auth(mgr_tok), auth(w_tok)
    async with httpx.AsyncClient(base_url=rs.http) as h:
        sent = await h.post("/api/v1/messages", headers=m, json={"to": w_id, "client_msg_id": "a1", "body": "在吗"})
        assert sent.status_code == 201, sent.text
        msg = sent.json()
        await h.post(f"/api/v1/conversations/{msg['conversation_id']}/read", headers=w,
                     json={"message_id": msg["message_id"]})  # fmt: skip
        assert (await h.patch(f"/api/v1/messages/{msg['message_id']}", headers=m, json={"body": "在吗?"})).is_success
        assert (await h.post(f"/api/v1/messages/{msg['message_id']}/recall", headers=m)).is_success
        g = (await h.post("/api/v1/groups", headers=m, json={"title": "防汛专班", "person_ids": [w_id]})).json()
        post = {"client_msg_id": "g1", "body": "@网格员 请报数", "mention_persons": [w_id], "as_position": head_pos}
        assert (await h.post(f"/api/v1/conversations/{g['id']}/messages", headers=m, json=post)).status_code == 201
        assert (await h.post(f"/api/v1/conversations/{g['id']}/mute", headers=w, json={"muted": True})).is_success
        notice = {"as_position": head_pos, "selector": "专职网格员@990101/**", "client_msg_id": "n1",
                  "title": "防汛通知", "priority": "urgent", "ack_required": True}  # fmt: skip
        nid = (await h.post("/api/v1/notices", headers=m, json=notice)).json()["notice_id"]
        assert (await h.post(f"/api/v1/notices/{nid}/ack", headers=w, json={"reply": "收到"})).is_success
        task = {"as_position": head_pos, "selector": f"pos:{w_pos}", "title": "巡查河道", "client_msg_id": "t1"}
        made = await h.post("/api/v1/tasks", headers=m, json=task)
        assert made.status_code == 201, made.text
        t = made.json()["tasks"][0]
        act = {"as_position": w_pos, "action": "accept", "version": t["version"]}
        assert (await h.post(f"/api/v1/tasks/{t['task_id']}/actions", headers=w, json=act)).is_success
        assert (await h.post(f"/api/v1/notices/{nid}/recall", headers=m)).is_success
        kinds: set[str] = set()
        stored: dict[str, int] = {}
        for name, who in (("manager", m), ("worker", w)):
            page = (await h.get("/api/v1/sync", headers=who, params={"since": 0})).json()
            # Live pushes start after the hello's last_seq: the seat's own positions.changed came before.
            stored[name] = len([e for e in page["events"] if e["seq"] > worker.hello["last_seq"]])
            for ev in page["events"]:
                _check_event(doc, {"type": "event", **ev})
                kinds.add(ev["kind"])
    expected = {"message.new", "message.edited", "message.recalled", "peer.read", "conversation.read",
                "conversation.muted", "notice.new", "notice.recalled", "task.created", "task.updated",
                "positions.changed"}  # fmt: skip
    assert expected <= kinds, expected - kinds
    live = await worker.wait_events(stored["worker"])  # the worker's own stream, as pushed live
    for frame in live:
        _check_event(doc, frame)
    reply = await worker.request({"type": "sync", "since": 0})
    errors = list(_validator(doc, "SyncOk").iter_errors(reply))
    assert not errors, [e.message for e in errors[:3]]
    bad = await worker.request({"type": "read", "conversation_id": 1})
    assert not list(_validator(doc, "ErrorFrame").iter_errors(bad))
    await worker.close()


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_every_event_model_rejects_undocumented_fields(kind: str) -> None:
    schema = EVENTS[kind].model_json_schema()
    assert schema.get("additionalProperties") is False, kind
