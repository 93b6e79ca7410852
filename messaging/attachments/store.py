"""Where uploaded bytes live: a content-addressed blob store behind a small interface.

A blob's name is the SHA-256 of its bytes, so storing the same photo twice
keeps one copy and a name can never point at other bytes. The local-disk
store never shows a partial file under a digest: bytes go to a private temp
file, are fsynced, checked, and only then renamed into place (rename is
atomic within one filesystem), after which the directory is fsynced so the
name survives a power cut too. A crash leaves at most a temp file in
``.incoming/``, which :meth:`LocalDiskStore.sweep_incoming` removes later.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["BlobReader", "BlobStore", "LocalDiskStore", "StoredBlob", "Verify", "is_digest"]

logger = logging.getLogger(__name__)

_DIGEST = re.compile(r"[0-9a-f]{64}")
_READ_CHUNK = 256 * 1024

#: Called with (digest, size) once every byte is written and before the blob
#: gets its name; raising refuses the blob and nothing is kept.
Verify = Callable[[str, int], None]


def is_digest(value: str) -> bool:
    """True for a lower-case hex SHA-256, the only form of blob name."""
    return _DIGEST.fullmatch(value) is not None  # fullmatch: "$" would let a trailing newline in


@dataclass(frozen=True, slots=True)
class StoredBlob:
    digest: str
    size: int


class BlobReader(Protocol):
    size: int

    def chunks(self) -> AsyncIterator[bytes]:
        """The blob's bytes, in order; closes the underlying file when exhausted or abandoned."""
        ...


class BlobStore(Protocol):
    """Content-addressed storage of immutable blobs."""

    async def put(self, chunks: AsyncIterable[bytes], verify: Verify | None = None) -> StoredBlob:
        """Store the stream under its SHA-256.

        If reading ``chunks`` or ``verify`` raises, nothing is stored and the
        exception propagates. Storing bytes already present is a no-op.
        """
        ...

    async def open(self, digest: str) -> BlobReader | None:
        """The blob for reading, or None if there is none."""
        ...

    async def exists(self, digest: str) -> bool: ...

    async def delete(self, digest: str) -> bool:
        """Remove the blob; False if it was not there."""
        ...

    def sweep_incoming(self, older_than: float = 3600.0) -> int:
        """Remove what interrupted puts left behind (e.g. after a kill -9); returns how many."""
        ...


class _FileReader:
    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    async def chunks(self) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(self.path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, _READ_CHUNK):
                yield chunk
        finally:
            f.close()


class LocalDiskStore:
    """Blobs as files ``root/ab/cd/<digest>``; temp files in ``root/.incoming`` (same filesystem)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / ".incoming"

    def path_of(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ValueError("not a blob digest")
        return self.root / digest[:2] / digest[2:4] / digest

    async def put(self, chunks: AsyncIterable[bytes], verify: Verify | None = None) -> StoredBlob:
        # The digest is known only after the last byte, so the temp file cannot
        # sit in the final directory; .incoming is under root, hence on the same
        # filesystem, and that is what makes the rename atomic.
        tmp = self.incoming / f"{secrets.token_hex(8)}.part"
        hasher = hashlib.sha256()
        size = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:  # the first upload ever (or the directory was removed)
            self.incoming.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                async for chunk in chunks:
                    hasher.update(chunk)
                    size += len(chunk)
                    # Page-cache writes of upload-sized chunks are short; the
                    # slow part (fsync) runs in a thread below.
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                digest = hasher.hexdigest()
                if verify is not None:
                    verify(digest, size)
                await asyncio.to_thread(os.fsync, fd)
            finally:
                os.close(fd)
            await asyncio.to_thread(self._install, tmp, digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StoredBlob(digest, size)

    def _install(self, tmp: Path, digest: str) -> None:
        final = self.path_of(digest)
        if final.exists():
            # Same name, same bytes (content addressing): keep the copy we have.
            tmp.unlink()
            return
        try:
            os.replace(tmp, final)
        except FileNotFoundError:  # first file in this ab/cd directory
            final.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(self.root)  # new directory entries must survive a power cut as well
            _fsync_dir(final.parent.parent)
            os.replace(tmp, final)
        _fsync_dir(final.parent)

    async def open(self, digest: str) -> BlobReader | None:
        if not is_digest(digest):
            return None
        path = self.path_of(digest)
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            return None
        return _FileReader(path, size)

    async def exists(self, digest: str) -> bool:
        return is_digest(digest) and await asyncio.to_thread(self.path_of(digest).is_file)

    async def delete(self, digest: str) -> bool:
        if not is_digest(digest):
            return False
        path = self.path_of(digest)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True

    def sweep_incoming(self, older_than: float = 3600.0) -> int:
        """Delete temp files left by crashed uploads; returns how many.

        Only files older than ``older_than`` seconds go, so an upload still in
        progress in another process keeps its temp file.
        """
        if not self.incoming.is_dir():
            return 0
        cutoff = time.time() - older_than
        removed = 0
        for p in self.incoming.glob("*.part"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            logger.info("removed %d abandoned upload temp files from %s", removed, self.incoming)
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
