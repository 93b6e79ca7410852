"""Photos in chat messages: the readers of a message may download its photos, nobody else."""

from __future__ import annotations

import httpx

from tests.attachments.conftest import image, sha
from tests.client import login, new_person
from tests.conftest import RunningServer

URL = "/api/v1/uploads"


async def _person(server: RunningServer) -> tuple[int, dict[str, str]]:
    pid, lg = await new_person(server.services_obj)  # type: ignore[attr-defined]
    tok = (await login(server.http, lg))["access_token"]
    return pid, {"Authorization": f"Bearer {tok}"}


async def test_group_members_see_a_message_photo_others_do_not_and_recall_hides_it(up_server: RunningServer) -> None:
    a, auth_a = await _person(up_server)
    b, auth_b = await _person(up_server)
    _, auth_c = await _person(up_server)
    data, other = image(size=5_000), image(size=6_000)
    async with httpx.AsyncClient(base_url=up_server.http) as c:
        for blob in (data, other):
            headers = {**auth_a, "Content-Type": "image/jpeg", "X-Content-SHA256": sha(blob)}
            r = await c.post(URL, content=blob, headers=headers)
            assert r.status_code == 201
        group = (await c.post("/api/v1/groups", json={"title": "现场", "person_ids": [b]}, headers=auth_a)).json()
        gid = group.get("id") or group.get("conversation_id")
        # B names A's upload in B's own message: not B's upload, so it stays an opaque ref.
        r = await c.post(
            f"/api/v1/conversations/{gid}/messages",
            json={"client_msg_id": "b-1", "body": "看这个", "attachments": [sha(other)]},
            headers=auth_b,
        )
        assert r.status_code == 201, r.text
        assert (await c.get(f"{URL}/{sha(other)}", headers=auth_b)).status_code == 404
        r = await c.post(
            f"/api/v1/conversations/{gid}/messages",
            json={"client_msg_id": "a-1", "body": "", "attachments": [sha(data), "opaque-ref-1"]},
            headers=auth_a,
        )
        assert r.status_code == 201, r.text
        mid = r.json()["message_id"]
        got = await c.get(f"{URL}/{sha(data)}", headers=auth_b)
        assert got.status_code == 200 and got.content == data
        assert (await c.get(f"{URL}/{sha(data)}", headers=auth_c)).status_code == 404
        assert (await c.post(f"/api/v1/messages/{mid}/recall", headers=auth_a)).status_code == 200
        assert (await c.get(f"{URL}/{sha(data)}", headers=auth_b)).status_code == 404
        assert (await c.get(f"{URL}/{sha(data)}", headers=auth_a)).status_code == 200  # the uploader still


async def test_a_photo_is_named_by_its_bare_digest_as_the_protocol_example_shows(up_server: RunningServer) -> None:
    """docs/protocol.md's send example named a photo ``"sha256:9f…"``; a client written from it sent
    references that stay opaque, and the readers got 404 for the photo (福建 audit). The example now
    shows the bare digest, which is the file; the prefixed form is still an opaque string."""
    from pathlib import Path

    protocol = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    assert '"attachments": ["sha256:' not in protocol and '"attachments": ["9f86d0…"]' in protocol
    a, auth_a = await _person(up_server)
    b, auth_b = await _person(up_server)
    data = image(size=4_000)
    async with httpx.AsyncClient(base_url=up_server.http) as c:
        r = await c.post(
            URL, content=data, headers={**auth_a, "Content-Type": "image/jpeg", "X-Content-SHA256": sha(data)}
        )
        assert r.status_code == 201, r.text
        gid = (await c.post("/api/v1/groups", json={"title": "巡河", "person_ids": [b]}, headers=auth_a)).json()
        gid = gid.get("id") or gid.get("conversation_id")
        posted = f"/api/v1/conversations/{gid}/messages"
        r = await c.post(posted, json={"client_msg_id": "p-1", "attachments": [f"sha256:{sha(data)}"]}, headers=auth_a)
        assert r.status_code == 201, r.text
        assert (await c.get(f"{URL}/{sha(data)}", headers=auth_b)).status_code == 404
        r = await c.post(posted, json={"client_msg_id": "p-2", "attachments": [sha(data)]}, headers=auth_a)
        assert r.status_code == 201, r.text
        assert (await c.get(f"{URL}/{sha(data)}", headers=auth_b)).content == data
