"""The upload API against a real server on both backends, bad input sent over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from tests.attachments.conftest import MAX_BYTES, PDF_HEAD, image, sha, stored_files
from tests.client import login, new_person
from tests.conftest import RunningServer, make_settings, start_server
from tests.waiting import wait_until

URL = "/api/v1/uploads"


async def _person(server: RunningServer) -> tuple[int, dict[str, str]]:
    pid, lg = await new_person(server.services_obj)  # type: ignore[attr-defined]
    tok = (await login(server.http, lg))["access_token"]
    return pid, {"Authorization": f"Bearer {tok}"}


def _headers(auth: dict[str, str], data: bytes, ctype: str = "image/jpeg") -> dict[str, str]:
    return {**auth, "Content-Type": ctype, "X-Content-SHA256": sha(data)}


def _error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == code, err
    return err


def _root(server: RunningServer) -> Any:
    return server.services_obj.settings.upload_path()  # type: ignore[attr-defined]


async def _exists(conn: Any, digest: str) -> bool:
    from sqlalchemy import select

    from messaging.attachments.schema import attachments

    return (await conn.execute(select(attachments.c.digest).where(attachments.c.digest == digest))).first() is not None


async def _raw(
    server: RunningServer, head: str, body: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    await writer.drain()
    return reader, writer


async def _raw_status(server: RunningServer, head: str, body: bytes = b"") -> bytes:
    """The status line the server answers a hand-written request with (the connection closed after)."""
    reader, writer = await _raw(server, head, body)
    try:
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


def _head(auth: dict[str, str], data: bytes, length: int) -> str:
    return (
        f"POST {URL} HTTP/1.1\nHost: test\nAuthorization: {auth['Authorization']}\n"
        f"Content-Type: image/jpeg\nX-Content-SHA256: {sha(data)}\nContent-Length: {length}\n"
    )


async def test_upload_then_download_with_cache_and_safety_headers(up_server: RunningServer) -> None:
    _, auth = await _person(up_server)
    data = image()
    async with httpx.AsyncClient(base_url=up_server.http) as c:
        r = await c.post(URL, content=data, headers=_headers(auth, data))
        assert r.status_code == 201, r.text
        assert r.json() == {"digest": sha(data), "size": len(data), "content_type": "image/jpeg"}
        r2 = await c.post(URL, content=data, headers=_headers(auth, data, "image/png"))
        assert r2.status_code == 200 and r2.json() == r.json()  # the sniffed type, not the declared one

        got = await c.get(f"{URL}/{sha(data)}", headers=auth)
        assert got.status_code == 200 and got.content == data
        assert got.headers["content-type"] == "image/jpeg"
        assert got.headers["etag"] == f'"{sha(data)}"'
        assert got.headers["cache-control"].startswith("private")
        assert got.headers["x-content-type-options"] == "nosniff"
        assert int(got.headers["content-length"]) == len(data)
        same = await c.get(f"{URL}/{sha(data)}", headers={**auth, "If-None-Match": f'"{sha(data)}"'})
        assert same.status_code == 304 and same.content == b""


async def test_others_get_404_until_a_ref_they_can_see_links_the_file(up_server: RunningServer) -> None:
    _, auth_a = await _person(up_server)
    b, auth_b = await _person(up_server)
    data = image()
    async with httpx.AsyncClient(base_url=up_server.http) as c:
        assert (await c.post(URL, content=data, headers=_headers(auth_a, data))).status_code == 201
        hidden = _error(await c.get(f"{URL}/{sha(data)}", headers=auth_b), 404, "not_found")
        missing = _error(await c.get(f"{URL}/{'0' * 64}", headers=auth_b), 404, "not_found")
        assert hidden == missing
        _error(await c.get(f"{URL}/{sha(data)}"), 401, "unauthorized")

        # The ref b can see: a message of a's in a group with b, which links a's upload.
        group = await c.post("/api/v1/groups", json={"title": "照片", "person_ids": [b]}, headers=auth_a)
        assert group.status_code == 201, group.text
        body = {"client_msg_id": "photo-1", "body": "", "attachments": [sha(data)]}
        sent = await c.post(f"/api/v1/conversations/{group.json()['id']}/messages", json=body, headers=auth_a)
        assert sent.status_code == 201, sent.text
        got = await c.get(f"{URL}/{sha(data)}", headers=auth_b)
        assert got.status_code == 200 and got.content == data


async def test_bad_uploads_are_refused_and_store_nothing(up_server: RunningServer) -> None:
    _, auth = await _person(up_server)
    root = _root(up_server)
    pdf = image(PDF_HEAD)
    data = image()
    async with httpx.AsyncClient(base_url=up_server.http) as c:
        _error(await c.post(URL, content=pdf, headers=_headers(auth, pdf)), 415, "unsupported_media_type")
        _error(
            await c.post(URL, content=data, headers=_headers(auth, data, "application/pdf")),
            415,
            "unsupported_media_type",
        )
        _error(
            await c.post(URL, content=data, headers={**_headers(auth, data), "X-Content-SHA256": sha(pdf)}),
            400,
            "checksum_mismatch",
        )
        no_sum = {k: v for k, v in _headers(auth, data).items() if k != "X-Content-SHA256"}
        _error(await c.post(URL, content=data, headers=no_sum), 400, "bad_request")
        _error(
            await c.post(URL, content=data, headers={**_headers(auth, data), "Authorization": ""}), 401, "unauthorized"
        )
        _error(
            await c.post(URL, content=data, headers={**_headers(auth, data), "Authorization": "Bearer x.y.z"}),
            401,
            "unauthorized",
        )

        async def chunked() -> AsyncIterator[bytes]:
            yield data

        _error(await c.post(URL, content=chunked(), headers=_headers(auth, data)), 411, "length_required")
    assert stored_files(root) == []
    assert not await _exists_digest(up_server, sha(data)) and not await _exists_digest(up_server, sha(pdf))


async def _exists_digest(server: RunningServer, digest: str) -> bool:
    svc = server.services_obj.attachments  # type: ignore[attr-defined]
    async with svc.db.read() as conn:
        return await _exists(conn, digest)


async def test_oversize_content_length_is_refused_before_the_body_is_sent(up_server: RunningServer) -> None:
    _, auth = await _person(up_server)
    big = image(size=MAX_BYTES + 1)
    # Headers only: the 413 must come without the server waiting for a single body byte.
    status = await _raw_status(up_server, _head(auth, big, len(big)))
    assert status.startswith(b"HTTP/1.1 413"), status
    assert stored_files(_root(up_server)) == []


async def test_body_longer_than_content_length_fails_the_checksum(up_server: RunningServer) -> None:
    """A lying Content-Length: the server reads only that many bytes, which do not hash to the file's SHA-256."""
    _, auth = await _person(up_server)
    data = image()
    status = await _raw_status(up_server, _head(auth, data, 5000), data)
    assert status.startswith(b"HTTP/1.1 400"), status
    assert stored_files(_root(up_server)) == []
    assert not await _exists_digest(up_server, sha(data))
    assert not await _exists_digest(up_server, sha(data[:5000]))


async def test_truncated_upload_from_a_disconnecting_client_stores_nothing(up_server: RunningServer) -> None:
    _, auth = await _person(up_server)
    root = _root(up_server)
    data = image(size=MAX_BYTES - 10)
    reader, writer = await _raw(up_server, _head(auth, data, len(data)), data[: len(data) // 2])
    # The server is storing it: a temp file exists in .incoming ...
    await wait_until(lambda: any((root / ".incoming").glob("*.part")), what="upload in progress")
    writer.transport.abort()  # ... when the client vanishes (RST, no more bytes)
    await wait_until(lambda: stored_files(root) == [], what="temp file discarded")
    assert not await _exists_digest(up_server, sha(data))
    # The same photo sent in full afterwards is accepted.
    async with httpx.AsyncClient(base_url=up_server.http) as c:
        assert (await c.post(URL, content=data, headers=_headers(auth, data))).status_code == 201
    assert len(stored_files(root)) == 1


async def test_uploads_beyond_the_per_person_rate_are_refused(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, upload_dir=tmp_path / "up", upload_rate_per_minute=2)
    server, task = await start_server(settings)
    try:
        _, auth = await _person(server)
        _, other = await _person(server)
        photos = [image() for _ in range(3)]
        async with httpx.AsyncClient(base_url=server.http) as c:
            for p in photos[:2]:
                assert (await c.post(URL, content=p, headers=_headers(auth, p))).status_code == 201
            _error(await c.post(URL, content=photos[2], headers=_headers(auth, photos[2])), 429, "rate_limited")
            # Per person: someone else is not slowed down.
            assert (await c.post(URL, content=photos[2], headers=_headers(other, photos[2]))).status_code == 201
        assert len(stored_files(tmp_path / "up")) == 3
    finally:
        server.server.should_exit = True
        await task


async def test_openapi_describes_the_raw_upload_body(up_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=up_server.http) as c:
        doc = (await c.get("/openapi.json")).json()
    post = doc["paths"][URL]["post"]
    assert "image/*" in post["requestBody"]["content"]
    assert [p["name"] for p in post["parameters"]] == ["X-Content-SHA256"]
    assert post["security"] == [{"bearer": []}]
    assert "get" in doc["paths"][URL + "/{digest}"]


async def test_a_client_that_stops_sending_gets_408_and_nothing_is_kept(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "up"
    server, task = await start_server(make_settings(db_url, upload_dir=root, upload_idle_timeout=0.3))
    try:
        _, auth = await _person(server)
        data = image()
        reader, writer = await _raw(server, _head(auth, data, len(data)), data[:7000])
        try:
            status = await asyncio.wait_for(reader.readline(), 10)  # the connection stays open, silent
            assert status.startswith(b"HTTP/1.1 408"), status
        finally:
            writer.close()
        assert stored_files(root) == []
        assert not await _exists_digest(server, sha(data))
    finally:
        server.server.should_exit = True
        await task
