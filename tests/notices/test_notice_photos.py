"""A notice's photos: its recipients and its sender side download them; nobody else; not after a recall.

The Gansu docs-only client attached an uploaded photo to a notice as docs/api/notices.md says
("sha256 digests of files uploaded first") and its recipients got 404 for it: notices never
linked their uploads. Other references stay as they are, as in chat messages.
"""

from __future__ import annotations

import httpx

from tests.attachments.conftest import PNG_HEAD, image, sha
from tests.conftest import RunningServer
from tests.org_server import auth, seat


async def test_recipients_download_a_notices_photos(org_server: RunningServer) -> None:
    rs = org_server
    _, _, head_pos, head_tok = await seat(rs, "990101", "county_head")
    _, _, _, w_tok = await seat(rs, "990101001001001", "grid_worker")
    _, _, _, other_tok = await seat(rs, "990102001001001", "grid_worker")
    photo = image(PNG_HEAD, 3_000)
    digest = sha(photo)
    async with httpx.AsyncClient(base_url=rs.http) as h:
        raw = {**auth(head_tok), "Content-Type": "image/png", "X-Content-SHA256": digest}
        up = await h.post("/api/v1/uploads", content=photo, headers=raw)
        assert up.status_code == 201, up.text
        body = {"as_position": head_pos, "selector": "专职网格员@990101001001/**", "client_msg_id": "np-1",
                "title": "现场照片", "attachments": [digest, "scan-0042"]}  # fmt: skip
        sent = await h.post("/api/v1/notices", json=body, headers=auth(head_tok))
        assert sent.status_code == 201, sent.text
        nid = sent.json()["notice_id"]
        view = await h.get(f"/api/v1/notices/{nid}", headers=auth(w_tok))
        assert view.json()["attachments"] == [digest, "scan-0042"]
        got = await h.get(f"/api/v1/uploads/{digest}", headers=auth(w_tok))
        assert got.status_code == 200 and got.content == photo
        assert (await h.get(f"/api/v1/uploads/{digest}", headers=auth(other_tok))).status_code == 404
        assert (await h.post(f"/api/v1/notices/{nid}/recall", headers=auth(head_tok))).status_code == 200
        assert (await h.get(f"/api/v1/uploads/{digest}", headers=auth(w_tok))).status_code == 404
        assert (await h.get(f"/api/v1/uploads/{digest}", headers=auth(head_tok))).status_code == 200  # the uploader


def test_uploads_md_lists_who_may_download_a_notices_photos() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "uploads.md").read_text()
    assert "**notice** (its recipients and its sender side)" in text


async def test_a_notice_with_an_object_among_its_attachments_is_sent(org_server: RunningServer) -> None:
    """Attachments are references, strings or objects (docs/api/notices.md); linking the sender's uploads
    put every reference in a dict's keys, so an object made the send fail with 500 internal_error (found
    by the trust audit). The object is kept as given and the digest beside it is still linked."""
    rs = org_server
    _, _, head_pos, head_tok = await seat(rs, "990101", "county_head")
    _, _, _, w_tok = await seat(rs, "990101001001001", "grid_worker")
    photo = image(PNG_HEAD, 3_100)
    digest = sha(photo)
    ref = {"name": "现场.pdf", "pages": 2}
    async with httpx.AsyncClient(base_url=rs.http) as h:
        raw = {**auth(head_tok), "Content-Type": "image/png", "X-Content-SHA256": digest}
        assert (await h.post("/api/v1/uploads", content=photo, headers=raw)).status_code == 201
        body = {"as_position": head_pos, "selector": "专职网格员@990101001001/**", "client_msg_id": "np-obj",
                "title": "现场材料", "attachments": [ref, digest, ref, "scan-7"]}  # fmt: skip
        sent = await h.post("/api/v1/notices", json=body, headers=auth(head_tok))
        assert sent.status_code == 201, sent.text
        view = await h.get(f"/api/v1/notices/{sent.json()['notice_id']}", headers=auth(w_tok))
        assert view.json()["attachments"] == [ref, digest, ref, "scan-7"]
        assert (await h.get(f"/api/v1/uploads/{digest}", headers=auth(w_tok))).status_code == 200
