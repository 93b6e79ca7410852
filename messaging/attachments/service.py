"""Uploads: checked streaming into the blob store, links to the things that use them, and who may read them.

Checks happen while the bytes stream in (size cap, image type from magic
bytes) and after the last byte (the client's SHA-256 and length); only when
all pass does the file get its name in the store, and only then is the row
written. A refused, failed or truncated upload leaves nothing behind.

Reading is allowed to a person who uploaded the bytes, or who can see any
ref linking them (links: ``messaging/attachments/links.py``; each ref kind's
visibility check is given at construction). Anyone else gets the same
``NotFound`` as for a digest that does not exist, so the API is no oracle for
which photos are stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import insert_ignore
from kernel.errors import BadRequest, NotFound
from kernel.hexids import lower_hex
from messaging.attachments.errors import (
    ChecksumMismatch,
    IncompleteUpload,
    TooLarge,
    UnsupportedType,
    UploadStalled,
)
from messaging.attachments.links import UPLOADER, CanSee
from messaging.attachments.schema import attachment_links, attachments
from messaging.attachments.sniff import SNIFF_BYTES, sniff
from messaging.attachments.store import BlobReader, BlobStore
from messaging.batching import Batcher
from messaging.events import EventLog
from messaging.unit_of_work import Txn, UnitOfWork
from messaging.wakeup import EventGroup

logger = logging.getLogger(__name__)

__all__ = ["UPLOADER", "AttachmentService", "Download", "Upload"]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: Generous for a village's mobile link (a 64 KiB chunk at 20 kbit/s takes ~26 s).
DEFAULT_IDLE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Upload:
    digest: str
    size: int
    content_type: str
    #: False when this person had already uploaded these exact bytes (nothing new stored).
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "size": self.size, "content_type": self.content_type}


@dataclass(frozen=True, slots=True)
class _Row:
    person_id: int
    digest: str
    size: int
    content_type: str


@dataclass(frozen=True, slots=True)
class Download:
    digest: str
    size: int
    content_type: str
    reader: BlobReader


class _Checked:
    """Passes the upload through while enforcing the size cap and sniffing the type from the first bytes."""

    def __init__(self, chunks: AsyncIterable[bytes], limit: int, max_bytes: int, idle_timeout: float) -> None:
        self._chunks = chunks
        self._limit = limit
        self._max_bytes = max_bytes
        self._idle_timeout = idle_timeout
        self.size = 0
        self.content_type: str | None = None
        self._head = b""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        source = aiter(self._chunks)
        while True:
            try:
                # A client that stops sending but keeps the connection open would
                # otherwise hold its temp file and a request slot for ever.
                chunk = await asyncio.wait_for(anext(source), self._idle_timeout)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise UploadStalled(
                    f"no data for {self._idle_timeout:g} s; upload abandoned",
                    data={"received": self.size},
                ) from None
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self._limit:
                # Stop reading now: the rest of an oversize body is never stored.
                raise TooLarge(
                    f"upload larger than {self._limit} bytes",
                    data={"max_bytes": self._max_bytes},
                )
            if self.content_type is None:
                self._head += chunk[: SNIFF_BYTES - len(self._head)]
                if len(self._head) >= SNIFF_BYTES:
                    self._decide()
            yield chunk
        if self.content_type is None:
            self._decide()

    def _decide(self) -> None:
        found = sniff(self._head)
        if found is None:
            raise UnsupportedType("only JPEG, PNG, WebP and HEIC images are accepted")
        self.content_type = found


class AttachmentService:
    """Upload content-addressed files and authorise reading them.

    Args:
        db: where the rows live.
        store: where the bytes live.
        clock: stamps ``created_at``.
        visibility: ``{ref kind: can_see(person_id, ref_id)}``: who may see a ref
            (and so the files it links); a ref kind not named here shows nothing
            beyond the uploader.
        max_bytes: largest accepted upload.
        idle_timeout: seconds an upload may go without receiving a byte.
    """

    def __init__(
        self,
        db: Database,
        store: BlobStore,
        clock: Clock,
        *,
        visibility: Mapping[str, CanSee] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        if visibility is not None and UPLOADER in visibility:
            raise ValueError("the uploader rule is built in")
        self.db = db
        self.store = store
        self.clock = clock
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self._visibility: dict[str, CanSee] = dict(visibility or {})
        # An upload wakes nobody: no per-person event is written for it.
        self._uow = UnitOfWork(db, EventLog(db), clock, _no_wakeups)
        self._rows: Batcher[_Row, bool] = self._uow.batcher(self._record, name="attachment-rows")

    # --- uploading ------------------------------------------------------------------

    async def upload(
        self,
        person_id: int,
        chunks: AsyncIterable[bytes],
        *,
        sha256: str | None,
        length: int | None,
    ) -> Upload:
        """Store an upload whose client said it has ``length`` bytes with SHA-256 ``sha256``.

        Raises:
            BadRequest: checksum missing or malformed; ``ChecksumMismatch``;
                ``IncompleteUpload`` when fewer bytes than ``length`` arrived.
            TooLarge: over ``max_bytes`` (declared or actual).
            UnsupportedType: the bytes are not an accepted image.
            UploadStalled: no byte arrived for ``idle_timeout`` seconds.
        """
        expected = self.check_declared(sha256, length)
        limit = min(length, self.max_bytes) if length is not None else self.max_bytes
        checked = _Checked(chunks, limit, self.max_bytes, self.idle_timeout)

        def verify(digest: str, size: int) -> None:
            if length is not None and size != length:
                raise IncompleteUpload(f"received {size} of {length} bytes", data={"received": size})
            if digest != expected:
                raise ChecksumMismatch(
                    "the bytes received do not match the SHA-256 given", data={"expected": expected, "actual": digest}
                )

        blob = await self.store.put(checked, verify)
        assert checked.content_type is not None  # decided before the stream ended
        content_type = checked.content_type
        created = await self._rows.submit(_Row(person_id, blob.digest, blob.size, content_type))
        return Upload(blob.digest, blob.size, content_type, created)

    def check_declared(self, sha256: str | None, length: int | None) -> str:
        """Refuse before reading any body: returns the normalised expected digest."""
        if sha256 is None or not sha256.strip():
            raise BadRequest("the SHA-256 of the file is required (X-Content-SHA256)", data={"field": "sha256"})
        expected = lower_hex(sha256.strip(), 64)  # either case (kernel.hexids); compared lower-case
        if expected is None:
            raise BadRequest("the SHA-256 must be 64 hex digits", data={"field": "sha256"})
        if length is not None and length > self.max_bytes:
            raise TooLarge(f"upload larger than {self.max_bytes} bytes", data={"max_bytes": self.max_bytes})
        return expected

    async def _record(self, tx: Txn, rows: Sequence[_Row]) -> list[bool | BaseException]:
        """The rows of many finished uploads in one transaction (group commit: one fsync for all)."""
        conn, now = tx.conn, tx.now
        wanted = {(r.digest, r.person_id) for r in rows}
        had = await conn.execute(
            select(attachment_links.c.digest, attachment_links.c.ref_id).where(
                attachment_links.c.ref_kind == UPLOADER,
                attachment_links.c.digest.in_(sorted({d for d, _ in wanted})),
                attachment_links.c.ref_id.in_(sorted({p for _, p in wanted})),
            )
        )
        seen = {(d, int(p)) for d, p in had} & wanted
        files = {r.digest: r for r in rows}
        await conn.execute(
            insert_ignore(conn, attachments, ["digest"]),
            [
                {
                    "digest": r.digest,
                    "size": r.size,
                    "content_type": r.content_type,
                    "uploaded_by": r.person_id,
                    "created_at": now,
                }
                for r in files.values()
            ],
        )
        await conn.execute(
            insert_ignore(conn, attachment_links, ["digest", "ref_kind", "ref_id"]),
            [{"digest": d, "ref_kind": UPLOADER, "ref_id": p} for d, p in wanted],
        )
        created: list[bool | BaseException] = []
        for r in rows:
            key = (r.digest, r.person_id)
            created.append(key not in seen)
            seen.add(key)  # the same person's second copy in this batch is a repeat
        return created

    async def close(self) -> None:
        """Write the rows of uploads already stored, then stop (graceful shutdown)."""
        await self._rows.close()

    async def sweep_incoming(self) -> None:
        """Periodic housekeeping: temp files of uploads cut off by a crash."""
        await asyncio.to_thread(self.store.sweep_incoming)

    # --- reading ------------------------------------------------------------------------

    async def can_read(self, person_id: int, digest: str) -> bool:
        """Uploader, or someone a visibility check lets see a ref linking the file."""
        digest = lower_hex(digest, 64) or ""
        if not digest:
            return False
        async with self.db.read() as conn:
            links = await _links(conn, digest)
        return await self._visible(person_id, links)

    async def _visible(self, person_id: int, links: Sequence[tuple[str, int]]) -> bool:
        if (UPLOADER, person_id) in links:
            return True
        for kind, ref in links:
            check = self._visibility.get(kind)
            if check is not None and await check(person_id, ref):
                return True
        return False

    async def open(self, person_id: int, digest: str) -> Download:
        """The file for a reader allowed to see it.

        Raises:
            NotFound: missing, or not visible to this person (indistinguishable).
        """
        return await self.open_for(digest, partial(self._visible, person_id))

    async def open_for(self, digest: str, allowed: Callable[[Sequence[tuple[str, int]]], Awaitable[bool]]) -> Download:
        """The file when ``allowed`` accepts the (ref_kind, ref_id) links using it (an app's own rules).

        Raises:
            NotFound: missing, or not allowed (indistinguishable).
        """
        digest = lower_hex(digest, 64) or ""  # either case (kernel.hexids)
        if not digest:
            raise NotFound("no such file")
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(attachments.c.size, attachments.c.content_type).where(attachments.c.digest == digest)
                )
            ).first()
            links = await _links(conn, digest) if row is not None else []
        if row is None or not await allowed(links):
            raise NotFound("no such file")
        reader = await self.store.open(digest)
        if reader is None:
            logger.error("attachment %s has a row but no file in the store", digest)
            raise NotFound("no such file")
        return Download(digest, int(row[0]), str(row[1]), reader)


def _no_wakeups(groups: list[EventGroup]) -> None:
    """Attachment writes append no per-person events, so there is never anyone to wake."""
    logger.error("attachment write produced %d wake-up groups; none were expected", len(groups))


async def _links(conn: AsyncConnection, digest: str) -> list[tuple[str, int]]:
    """Every (ref_kind, ref_id) using the file, uploaders included."""
    rows = await conn.execute(
        select(attachment_links.c.ref_kind, attachment_links.c.ref_id).where(attachment_links.c.digest == digest)
    )
    return [(str(kind), int(ref)) for kind, ref in rows]
