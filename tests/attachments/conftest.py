"""Fixtures of the upload tests: image bytes of each kind, a service on both backends, a served app."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kernel.clock import FakeClock
from kernel.db.database import Database
from messaging.attachments.links import AttachmentLinks
from messaging.attachments.schema import attachment_links, attachments
from messaging.attachments.service import AttachmentService
from messaging.attachments.store import LocalDiskStore
from org_tree.people import PersonDirectory
from tests.conftest import RunningServer, make_settings, serving

MAX_BYTES = 64 * 1024

JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
WEBP_HEAD = b"RIFF\x00\x10\x00\x00WEBPVP8 "
HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00"
PDF_HEAD = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"


def image(head: bytes = JPEG_HEAD, size: int = 20_000) -> bytes:
    """Bytes that start like the given format; random after, so each call is a new file."""
    return head + secrets.token_bytes(size - len(head))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def stream(data: bytes, chunk: int = 4096) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


def stored_files(root: Path) -> list[Path]:
    """Every file in the store, temp files included (the proof that nothing was half-stored)."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@dataclass
class Env:
    svc: AttachmentService
    db: Database
    root: Path
    people: PersonDirectory
    links: AttachmentLinks = field(default_factory=AttachmentLinks)
    #: ``{report id: persons who may see it}``: the "report" visibility check the service was built with.
    report_readers: dict[int, set[int]] = field(default_factory=dict)

    async def person(self) -> int:
        return (await self.people.create(f"p{secrets.token_hex(4)}")).id

    async def rows(self, digest: str) -> tuple[int, int]:
        """(attachments rows, link rows) for one digest; the PG database is shared, so never totals."""
        async with self.db.read() as conn:
            a = (
                await conn.execute(select(func.count()).select_from(attachments).where(attachments.c.digest == digest))
            ).scalar_one()
            links = (
                await conn.execute(
                    select(func.count()).select_from(attachment_links).where(attachment_links.c.digest == digest)
                )
            ).scalar_one()
        return int(a), int(links)

    async def upload(self, person: int, data: bytes) -> str:
        res = await self.svc.upload(person, stream(data), sha256=sha(data), length=len(data))
        return res.digest


@pytest.fixture
async def env(db_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    db = Database(db_url, pool_size=4)
    root = tmp_path / "blobs"
    readers: dict[int, set[int]] = {}

    async def can_see_report(person_id: int, report_id: int) -> bool:
        return person_id in readers.get(report_id, set())

    visibility = {"report": can_see_report}
    svc = AttachmentService(db, LocalDiskStore(root), FakeClock(), visibility=visibility, max_bytes=MAX_BYTES)
    try:
        yield Env(svc, db, root, PersonDirectory(db, FakeClock()), report_readers=readers)
    finally:
        await svc.close()
        await db.dispose()


@pytest.fixture
async def up_server(db_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The app with its uploads in this test's own directory and a small size cap."""
    settings = make_settings(db_url, upload_dir=tmp_path / "uploads", upload_max_bytes=MAX_BYTES)
    async with serving(settings) as rs:
        yield rs


async def collect(chunks: AsyncIterable[bytes]) -> bytes:
    return b"".join([c async for c in chunks])
