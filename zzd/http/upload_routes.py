"""``/api/v1/uploads``: photo upload as a raw request body, and download for those allowed to see it.

Raw body rather than multipart: one file per request is all a report needs,
the bytes stream straight into the blob store without a form parser, and
the size is known from ``Content-Length`` before any byte is read (see
docs/uploads.md).
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from kernel.errors import BadRequest, RateLimited
from kernel.hexids import hex_pattern
from kernel.numbers import parse_uint
from messaging.attachments.errors import IncompleteUpload, LengthRequired, UnsupportedType
from messaging.attachments.service import Download
from zzd.http.actors import current_person
from zzd.http.conditional import none_match
from zzd.http.contract import Endpoints, WireModel, reply

logger = logging.getLogger(__name__)

__all__ = ["SHA256_HEADER", "file_response", "routes"]

api = Endpoints(tag="uploads")

#: Header carrying the hex SHA-256 of the body (required; either case, kernel.hexids).
SHA256_HEADER = "X-Content-SHA256"


class Uploaded(WireModel):
    digest: str
    size: int
    content_type: str


_UPLOAD_DOC = {
    "parameters": [
        {
            "name": SHA256_HEADER,
            "in": "header",
            "required": True,
            "description": "hex SHA-256 of the body, either case (the answer's digest is lower-case)",
            "schema": {"type": "string", "pattern": hex_pattern(64)},
        }
    ],
    "requestBody": {
        "required": True,
        "description": "the image bytes; Content-Length required; JPEG, PNG, WebP or HEIC by content",
        "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
    },
    "responses": {"200": {"description": "you had already uploaded these bytes"}},
}
_DOWNLOAD_DOC = {
    "parameters": [
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": 'RFC 9110 13.1.2: 304 when it is * or lists the ETag (weak comparison: W/"<digest>" '
            'matches too; "<digest>" is compared exactly, so only the lower-case form matches)',
            "schema": {"type": "string", "maxLength": 200},
        }
    ],
    "responses": {
        "200": {
            "description": "the file, with its stored Content-Type, ETag and Cache-Control: private, immutable",
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
}


def _content_length(request: Request) -> int:
    if "transfer-encoding" in request.headers or "content-length" not in request.headers:
        raise LengthRequired("send Content-Length (chunked uploads are not accepted)")
    raw = request.headers["content-length"].strip()
    if parse_uint(raw, 0, 10**15) is None:
        raise BadRequest("Content-Length must be a non-negative integer", data={"field": "content-length"})
    return int(raw)


@api.route(
    "POST", "/api/v1/uploads", {200: Uploaded, 201: Uploaded}, errors=(400, 411, 413, 415, 429), extra=_UPLOAD_DOC
)
async def upload(request: Request) -> Response:
    """Upload one photo: the image bytes as the body, its SHA-256 (hex) in X-Content-SHA256.

    201 with ``{digest, size, content_type}``; 200 when you had already
    uploaded the same bytes. Link the digest from a report or task transition.
    """
    s, claims = await current_person(request)
    if not s.upload_limiter.allow(claims.person_id, s.clock.monotonic()):
        raise RateLimited("too many uploads; slow down")
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not declared.startswith("image/"):
        raise UnsupportedType("send the photo as the raw body with Content-Type image/…")
    length = _content_length(request)
    sha256 = request.headers.get(SHA256_HEADER)
    try:
        res = await s.attachments.upload(claims.person_id, request.stream(), sha256=sha256, length=length)
    except ClientDisconnect:
        # Nothing was stored (the store discards the temp file); the client is gone.
        logger.info("upload by person %s cut off by the client", claims.person_id)
        raise IncompleteUpload("the connection closed before the whole file arrived") from None
    return reply(Uploaded, res.to_dict(), status=201 if res.created else 200)


@api.route("GET", "/api/v1/uploads/{digest}", {200: None, 304: None}, extra=_DOWNLOAD_DOC)
async def download(request: Request) -> Response:
    """Download a file you uploaded or that is attached to something you can see."""
    s, claims = await current_person(request)
    return file_response(request, await s.attachments.open(claims.person_id, request.path_params["digest"]))


def file_response(request: Request, dl: Download) -> Response:
    """A stored file as its download answers it (also the bot API's, ``GET /api/v1/bot/uploads/{digest}``)."""
    etag = f'"{dl.digest}"'
    headers = {
        "ETag": etag,
        # Per-person access: shared caches must not keep it; the bytes never change.
        "Cache-Control": "private, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    if none_match(request.headers.getlist("if-none-match"), etag):  # RFC 9110 13.1.2: *, weak, lists
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(dl.size)
    return StreamingResponse(dl.reader.chunks(), media_type=dl.content_type, headers=headers)


routes = api.routes
