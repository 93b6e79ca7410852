"""AttachmentService on both backends: each bad upload refused with a clear code, nothing stored; access rules."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from kernel.errors import BadRequest, ErrorCode, NotFound, ZzdError
from messaging.attachments.errors import ChecksumMismatch, IncompleteUpload, TooLarge, UnsupportedType, UploadStalled
from tests.attachments.conftest import (
    HEIC_HEAD,
    MAX_BYTES,
    PDF_HEAD,
    PNG_HEAD,
    WEBP_HEAD,
    Env,
    collect,
    image,
    sha,
    stored_files,
    stream,
)


def _fresh_ref() -> int:
    """A report id no other test links to (the PostgreSQL database is shared by the session)."""
    return 2**40 + secrets.randbelow(2**30)


async def test_upload_stores_file_row_and_uploader_link(env: Env) -> None:
    p = await env.person()
    data = image()
    res = await env.svc.upload(p, stream(data), sha256=sha(data).upper(), length=len(data))
    assert (res.digest, res.size, res.content_type, res.created) == (sha(data), len(data), "image/jpeg", True)
    assert await env.rows(res.digest) == (1, 1)
    assert len(stored_files(env.root)) == 1
    again = await env.svc.upload(p, stream(data), sha256=sha(data), length=len(data))
    assert again.created is False and again.digest == res.digest
    assert await env.rows(res.digest) == (1, 1)
    assert len(stored_files(env.root)) == 1


@pytest.mark.parametrize(
    ("head", "ctype"),
    [(PNG_HEAD, "image/png"), (WEBP_HEAD, "image/webp"), (HEIC_HEAD, "image/heic")],
)
async def test_type_comes_from_the_bytes(env: Env, head: bytes, ctype: str) -> None:
    p = await env.person()
    data = image(head)
    res = await env.svc.upload(p, stream(data, chunk=5), sha256=sha(data), length=len(data))
    assert res.content_type == ctype


async def test_second_uploader_of_the_same_bytes_owns_them_too(env: Env) -> None:
    a, b = await env.person(), await env.person()
    data = image()
    await env.upload(a, data)
    res = await env.svc.upload(b, stream(data), sha256=sha(data), length=len(data))
    # 201 for b: whether someone else stored these bytes before is not b's business.
    assert res.created is True
    assert await env.svc.can_read(b, res.digest)
    assert await env.rows(res.digest) == (1, 2)
    assert len(stored_files(env.root)) == 1


class Boom(Exception):
    pass


async def _dies_midway(data: bytes) -> AsyncIterator[bytes]:
    yield data[:8000]
    raise Boom("connection reset")


async def _endless(pulled: list[int]) -> AsyncIterator[bytes]:
    yield image(size=4096)
    while True:
        pulled.append(1)
        yield b"\0" * 4096


async def _never_read(pulled: list[int]) -> AsyncIterator[bytes]:
    pulled.append(1)
    yield b"never"


async def _assert_refused(env: Env, exc: type[ZzdError], code: ErrorCode, **kw: object) -> ZzdError:
    p = await env.person()
    with pytest.raises(exc) as info:
        await env.svc.upload(p, **kw)  # type: ignore[arg-type]
    assert info.value.code == code
    assert stored_files(env.root) == []
    return info.value


async def test_pdf_declared_as_jpeg_is_refused(env: Env) -> None:
    data = image(PDF_HEAD)
    await _assert_refused(
        env, UnsupportedType, ErrorCode.UNSUPPORTED_MEDIA_TYPE, chunks=stream(data), sha256=sha(data), length=len(data)
    )
    assert await env.rows(sha(data)) == (0, 0)


async def test_tiny_and_empty_files_are_refused_as_not_images(env: Env) -> None:
    for data in (b"", b"\xff\xd8"):
        await _assert_refused(
            env,
            UnsupportedType,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            chunks=stream(data),
            sha256=sha(data),
            length=len(data),
        )


async def test_declared_length_over_the_cap_is_refused_before_reading(env: Env) -> None:
    pulled: list[int] = []
    err = await _assert_refused(
        env, TooLarge, ErrorCode.PAYLOAD_TOO_LARGE, chunks=_never_read(pulled), sha256="a" * 64, length=MAX_BYTES + 1
    )
    assert pulled == [] and err.data == {"max_bytes": MAX_BYTES}


async def test_body_past_the_cap_stops_reading_and_stores_nothing(env: Env) -> None:
    """No declared length (or one that lies): the cap is enforced on the bytes as they arrive."""
    for length in (None, 10_000):
        pulled: list[int] = []
        await _assert_refused(
            env, TooLarge, ErrorCode.PAYLOAD_TOO_LARGE, chunks=_endless(pulled), sha256="a" * 64, length=length
        )
        limit = MAX_BYTES if length is None else length
        assert len(pulled) <= limit // 4096 + 1  # stopped at the cap, did not drain the stream


async def test_fewer_bytes_than_declared_is_incomplete(env: Env) -> None:
    data = image()
    await _assert_refused(
        env, IncompleteUpload, ErrorCode.INCOMPLETE_UPLOAD, chunks=stream(data), sha256=sha(data), length=len(data) + 1
    )
    assert await env.rows(sha(data)) == (0, 0)


async def test_checksum_mismatch_missing_or_malformed(env: Env) -> None:
    data = image()
    other = sha(data + b"x")
    err = await _assert_refused(
        env, ChecksumMismatch, ErrorCode.CHECKSUM_MISMATCH, chunks=stream(data), sha256=other, length=len(data)
    )
    assert err.data == {"expected": other, "actual": sha(data)}
    for bad in (None, "", "abc", "g" * 64, sha(data) + "0"):
        await _assert_refused(env, BadRequest, ErrorCode.BAD_REQUEST, chunks=stream(data), sha256=bad, length=len(data))
    assert await env.rows(sha(data)) == (0, 0)


async def test_crash_mid_stream_leaves_no_file_and_no_row(env: Env) -> None:
    p = await env.person()
    data = image()
    with pytest.raises(Boom):
        await env.svc.upload(p, _dies_midway(data), sha256=sha(data), length=len(data))
    assert stored_files(env.root) == []
    assert await env.rows(sha(data)) == (0, 0)
    # And the same upload retried in full then succeeds.
    assert await env.upload(p, data) == sha(data)


# --- access --------------------------------------------------------------------------


async def test_only_the_uploader_reads_until_a_visible_ref_links_the_file(env: Env) -> None:
    a, b, c = await env.person(), await env.person(), await env.person()
    data = image()
    digest = await env.upload(a, data)
    dl = await env.svc.open(a, digest)
    assert (dl.size, dl.content_type) == (len(data), "image/jpeg")
    assert await collect(dl.reader.chunks()) == data

    with pytest.raises(NotFound) as hidden:
        await env.svc.open(b, digest)
    with pytest.raises(NotFound) as missing:
        await env.svc.open(b, "0" * 64)
    assert hidden.value.to_dict() == missing.value.to_dict()  # no existence oracle

    ref = _fresh_ref()
    env.report_readers[ref] = {b}
    assert not await env.svc.can_read(b, digest)  # b may see the report, but nothing links the file yet
    async with env.db.write() as conn:
        await env.links.link(conn, [digest], person_id=a, ref_kind="report", ref_id=ref)
    assert await env.svc.can_read(b, digest)
    assert await collect((await env.svc.open(b, digest)).reader.chunks()) == data
    assert not await env.svc.can_read(c, digest)
    async with env.db.read() as conn:
        assert await env.links.linked(conn, "report", ref) == [
            {"digest": digest, "size": len(data), "content_type": "image/jpeg"}
        ]
    # Linking again is a no-op.
    async with env.db.write() as conn:
        await env.links.link(conn, [digest, digest], person_id=a, ref_kind="report", ref_id=ref)
    assert await env.rows(digest) == (1, 2)


async def test_a_ref_kind_without_a_visibility_check_shows_nothing(env: Env) -> None:
    a, b = await env.person(), await env.person()
    digest = await env.upload(a, image())
    async with env.db.write() as conn:
        await env.links.link(conn, [digest], person_id=a, ref_kind="task_event", ref_id=b)
    assert not await env.svc.can_read(b, digest)


async def test_linking_someone_elses_upload_links_nothing(env: Env) -> None:
    a, b = await env.person(), await env.person()
    ref = _fresh_ref()
    mine = await env.upload(a, image())
    theirs = await env.upload(b, image())
    for digests in ([theirs], [mine, theirs], ["0" * 64], ["not-a-digest"]):
        with pytest.raises(BadRequest) as info:
            async with env.db.write() as conn:
                await env.links.link(conn, digests, person_id=a, ref_kind="report", ref_id=ref)
        assert info.value.code == ErrorCode.UNKNOWN_ATTACHMENT
        assert mine not in info.value.data["digests"]
    async with env.db.read() as conn:
        assert await env.links.linked(conn, "report", ref) == []
    assert await env.rows(mine) == (1, 1) and await env.rows(theirs) == (1, 1)


async def test_link_refuses_too_many_and_the_reserved_kind(env: Env) -> None:
    a = await env.person()
    digest = await env.upload(a, image())
    async with env.db.write() as conn:
        with pytest.raises(BadRequest):
            await env.links.link(conn, [f"{i:064x}" for i in range(21)], person_id=a, ref_kind="report", ref_id=1)
        with pytest.raises(ValueError, match="uploader"):
            await env.links.link(conn, [digest], person_id=a, ref_kind="uploader", ref_id=2)


async def test_a_stalled_upload_is_abandoned_and_stores_nothing(env: Env) -> None:
    env.svc.idle_timeout = 0.2
    never = asyncio.Event()
    data = image()

    async def stalls() -> AsyncIterator[bytes]:
        yield data[:5000]
        await never.wait()  # the client keeps the connection open and sends nothing more
        yield data[5000:]

    err = await _assert_refused(
        env, UploadStalled, ErrorCode.INCOMPLETE_UPLOAD, chunks=stalls(), sha256=sha(data), length=len(data)
    )
    assert err.http_status == 408 and err.data == {"received": 5000}
    assert await env.rows(sha(data)) == (0, 0)


async def test_a_row_whose_file_is_gone_reads_as_not_found(env: Env) -> None:
    a = await env.person()
    digest = await env.upload(a, image())
    assert await env.svc.store.delete(digest)
    with pytest.raises(NotFound):
        await env.svc.open(a, digest)
