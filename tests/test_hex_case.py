"""Hex in a request is read in either case and kept lower-case, everywhere (``kernel.hexids``), on both backends.

An outside audit found the server reading upper-case hex where the OpenAPI patterns said lower-case only,
and not consistently: X-Content-SHA256 and the download path were folded, a session id was refused, a
photo digest was "not a digest", and a chat or notice attachment in upper case was kept as an opaque
string and never linked, so its recipients got 404 for the photo. Each place is tried here over a real
server; the documented patterns are checked to say what the server does.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.hexids import lower_hex, lower_hex_ref, lower_uuid
from kernel.sessions import public_id
from messaging.attachments.store import is_digest
from scripts.demo_loop import png
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth, org_serving, seat

GRID, COUNTY = "990101001001001", "990101"


@pytest.fixture
async def org_server(own_db_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with org_serving(own_db_url, tmp_path, upload_dir=str(tmp_path / "up")) as rs:
        yield rs


def test_hex_is_read_in_either_case_and_nothing_else() -> None:
    d = "ab" * 32
    assert lower_hex(d.upper(), 64) == lower_hex(d, 64) == d
    for bad in (d + "\n", " " + d, d[:-1], "0x" + d[2:], d[:-1] + "g", None, 7):
        assert lower_hex(bad, 64) is None, bad
    assert lower_hex("AB" * 16, 32) == "ab" * 16
    assert lower_hex_ref(d.upper()) == d and lower_hex_ref("file:1") == "file:1" and lower_hex_ref({"a": 1}) == {"a": 1}
    assert lower_uuid("0B7F6C1E-3F7E-4A5E-9D0C-5B1E1C2D3E4F") == "0b7f6c1e-3f7e-4a5e-9d0c-5b1e1c2d3e4f"
    assert lower_uuid("NOPE") == "NOPE"
    # the store's own check took a trailing newline ("$" matches before one); a path can carry %0A
    assert is_digest(d) and not is_digest(d + "\n") and not is_digest(d.upper())


def test_the_documented_patterns_admit_both_cases() -> None:
    from scripts.api_docs import build

    doc = build()
    params = {
        (path, p["name"]): p["schema"]["pattern"]
        for path, ops in doc["paths"].items()
        for op in ops.values()
        for p in op.get("parameters", [])
        if "pattern" in p.get("schema", {})
    }
    assert params[("/api/v1/uploads/{digest}", "digest")] == "^[0-9a-fA-F]{64}$"
    assert params[("/api/v1/bot/uploads/{digest}", "digest")] == "^[0-9a-fA-F]{64}$"
    assert params[("/api/v1/uploads", "X-Content-SHA256")] == "^[0-9a-fA-F]{64}$"
    assert params[("/api/v1/auth/sessions/{session}", "session")] == "^[0-9a-fA-F]{32}$"


async def _upload(h: httpx.AsyncClient, tok: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    headers = {**auth(tok), "Content-Type": "image/png", "X-Content-SHA256": digest.upper()}
    r = await h.post("/api/v1/uploads", content=data, headers=headers)
    assert r.status_code == 201 and r.json()["digest"] == digest, r.text  # answered lower-case
    return digest


async def test_upper_case_photo_digests_in_a_report_are_the_files(org_server: RunningServer) -> None:
    rs = org_server
    grid_pos, wtok, _, _ = await _worker_and_head(rs)
    await rs.services_obj.org_index.refresh_if_changed()  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=rs.http) as h:
        # a report's photos (was 400 unknown_attachment: "must be sha256 hex digests")
        photo = await _upload(h, wtok, png(11))
        body = {"as_position": grid_pos, "client_msg_id": "hex-1", "category": "river_litter", "text": "垃圾",
                "location": {"lat": 28.9, "lon": 118.8}, "photos": [photo.upper()]}  # fmt: skip
        r = await h.post("/api/v1/reports", json=body, headers=auth(wtok))
        assert r.status_code == 201, r.text
        assert r.json()["photos"] == [photo]


async def _worker_and_head(rs: RunningServer) -> tuple[int, str, int, str]:
    """A grid worker and the county head above them: (worker's position, token, head's position, token)."""
    _, _, grid_pos, wtok = await seat(rs, GRID, "grid_worker")
    _, _, head_pos, htok = await seat(rs, COUNTY, "county_head")
    return grid_pos, wtok, head_pos, htok


async def test_an_upper_case_digest_in_a_notice_is_the_file_its_recipients_see(org_server: RunningServer) -> None:
    rs = org_server
    grid_pos, wtok, head_pos, htok = await _worker_and_head(rs)
    async with httpx.AsyncClient(base_url=rs.http) as h:
        # the head's photo reaches the worker (was kept as an opaque string, so 404 for the worker)
        notice_photo = await _upload(h, htok, png(12))
        sent = await h.post("/api/v1/notices", headers=auth(htok), json={
            "as_position": head_pos, "selector": f"pos:{grid_pos}", "client_msg_id": "hex-n1", "title": "看图",
            "attachments": [notice_photo.upper(), "ref:不是文件"]})  # fmt: skip
        assert sent.status_code == 201, sent.text
        seen = await h.get(f"/api/v1/notices/{sent.json()['notice_id']}", headers=auth(wtok))
        assert seen.status_code == 200 and seen.json()["attachments"] == [notice_photo, "ref:不是文件"], seen.text
        got = await h.get(f"/api/v1/uploads/{notice_photo.upper()}", headers=auth(wtok))
        assert got.status_code == 200 and got.headers["etag"] == f'"{notice_photo}"', got.text


async def test_an_upper_case_digest_in_a_message_is_the_file_its_readers_see(org_server: RunningServer) -> None:
    rs = org_server
    _, wtok, _, htok = await _worker_and_head(rs)
    async with httpx.AsyncClient(base_url=rs.http) as h:
        chat_photo = await _upload(h, wtok, png(13))
        worker_id = (await h.get("/api/v1/me", headers=auth(wtok))).json()["id"]
        group = await h.post("/api/v1/groups", json={"title": "照片", "person_ids": [worker_id]}, headers=auth(htok))
        assert group.status_code == 201, group.text
        _, other = await new_person(rs.services_obj)  # type: ignore[attr-defined]
        msg: dict[str, Any] = {"client_msg_id": "hex-m1", "body": "", "attachments": [chat_photo.upper()]}
        r = await h.post(f"/api/v1/conversations/{group.json()['id']}/messages", json=msg, headers=auth(wtok))
        assert r.status_code == 201, r.text
        assert (await h.get(f"/api/v1/uploads/{chat_photo}", headers=auth(htok))).status_code == 200
        stranger = (await login(rs.http, other))["access_token"]
        assert (await h.get(f"/api/v1/uploads/{chat_photo}", headers=auth(stranger))).status_code == 404


async def test_a_session_is_signed_out_by_its_id_in_either_case(org_server: RunningServer) -> None:
    rs = org_server
    _, lg = await new_person(rs.services_obj)  # type: ignore[attr-defined]
    phone, desk = await login(rs.http, lg), await login(rs.http, lg)
    async with httpx.AsyncClient(base_url=rs.http) as h:
        listed = (await h.get("/api/v1/auth/sessions", headers=auth(desk["access_token"]))).json()["sessions"]
        lost = next(x["id"] for x in listed if not x["current"])
        assert lost == lost.lower()
        r = await h.delete(f"/api/v1/auth/sessions/{lost.upper()}", headers=auth(desk["access_token"]))
        assert r.status_code == 200 and r.json() == {"revoked": True}, r.text  # was 400
        refused = await h.post("/api/v1/auth/token", json={"grant_type": "refresh_token",
                                                           "refresh_token": phone["refresh_token"]})  # fmt: skip
        assert refused.status_code == 401
        bad = await h.delete(f"/api/v1/auth/sessions/{'G' * 32}", headers=auth(desk["access_token"]))
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_request")
        assert public_id("x") == public_id("x").lower()
