"""Baseline for the upload benchmark: uvicorn + Starlette, stream the body to disk with the same durability.

Per request: read the body as it arrives, SHA-256 it, write it to a temp file,
fsync (in a thread, as zzd does), rename to ``root/ab/cd/<digest>``, fsync the directory, answer 201 with
the digest. No auth, no type or checksum checks, no database: what storing a
photo costs before ZZD does anything of its own.

Run:  .venv/bin/python bench/upload_bare.py --port 9000 --dir /tmp/bare-uploads
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def make_app(root: Path) -> Starlette:
    incoming = root / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)

    async def upload(request: Request) -> JSONResponse:
        tmp = incoming / f"{secrets.token_hex(8)}.part"
        hasher = hashlib.sha256()
        size = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            async for chunk in request.stream():
                hasher.update(chunk)
                size += len(chunk)
                os.write(fd, chunk)
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)
        digest = hasher.hexdigest()
        await asyncio.to_thread(_install, tmp, root / digest[:2] / digest[2:4] / digest)
        return JSONResponse({"digest": digest, "size": size, "content_type": "image/jpeg"}, status_code=201)

    return Starlette(routes=[Route("/api/v1/uploads", upload, methods=["POST"])])


def _install(tmp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    dfd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.dir), host="127.0.0.1", port=args.port, backlog=2048, access_log=False, log_level="warning"
    )


if __name__ == "__main__":
    main()
