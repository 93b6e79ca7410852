"""LocalDiskStore: content addressing, atomic install, nothing left behind by a failed write."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from messaging.attachments.store import LocalDiskStore
from tests.attachments.conftest import collect, image, sha, stored_files, stream


class Boom(Exception):
    pass


async def _dies_after(data: bytes, n: int) -> AsyncIterator[bytes]:
    yield data[:n]
    raise Boom("client went away")


async def test_put_names_the_file_by_its_sha256_in_two_fanout_dirs(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path)
    data = image()
    blob = await store.put(stream(data))
    assert blob.digest == sha(data) and blob.size == len(data)
    path = tmp_path / blob.digest[:2] / blob.digest[2:4] / blob.digest
    assert path.read_bytes() == data
    assert stored_files(tmp_path) == [path]  # no temp file left in .incoming
    assert await store.exists(blob.digest)
    reader = await store.open(blob.digest)
    assert reader is not None and reader.size == len(data)
    assert await collect(reader.chunks()) == data


async def test_same_bytes_twice_keep_one_file(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path)
    data = image()
    first = await store.put(stream(data))
    mtime = store.path_of(first.digest).stat().st_mtime_ns
    second = await store.put(stream(data, chunk=1000))
    assert second == first
    assert len(stored_files(tmp_path)) == 1
    assert store.path_of(first.digest).stat().st_mtime_ns == mtime  # the stored copy was not replaced


async def test_exception_mid_stream_leaves_no_file(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path)
    data = image()
    with pytest.raises(Boom):
        await store.put(_dies_after(data, 5000))
    assert stored_files(tmp_path) == []
    assert not await store.exists(sha(data))
    assert not await store.exists(sha(data[:5000]))


async def test_refused_by_verify_leaves_no_file(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path)
    seen: list[tuple[str, int]] = []

    def refuse(digest: str, size: int) -> None:
        seen.append((digest, size))
        raise Boom("checksum")

    data = image()
    with pytest.raises(Boom):
        await store.put(stream(data), refuse)
    assert seen == [(sha(data), len(data))]
    assert stored_files(tmp_path) == []


async def test_open_delete_and_names_that_are_not_digests(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path)
    blob = await store.put(stream(image()))
    assert await store.open("../" * 5 + "etc/passwd") is None
    assert await store.open(blob.digest.upper()) is None  # names are lower-case hex only
    assert not await store.exists("x" * 64)
    assert await store.delete(blob.digest)
    assert not await store.delete(blob.digest)
    assert await store.open(blob.digest) is None


async def test_sweep_removes_only_abandoned_temp_files(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path)
    store.incoming.mkdir(parents=True)
    old, fresh = store.incoming / "old.part", store.incoming / "fresh.part"
    old.write_bytes(b"half a photo")
    fresh.write_bytes(b"upload in progress")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert store.sweep_incoming(older_than=3600) == 1
    assert not old.exists() and fresh.exists()
