"""The web client (issue 14): the shell page, its ES modules and the npm modules they import.

The client is plain ES modules under ``zzd/web/`` with no build step. Its third-party modules
(Preact, htm, uPlot; ``package.json``) are installed by ``scripts/setup.sh`` with ``npm ci`` into
``node_modules/`` and served from there under ``/vendor/<package>/`` — only the packages listed
as runtime ``dependencies``, never the test tools. The page maps bare specifiers (``preact``,
``htm/preact``) to those paths with an import map; because an import map must be inline, the page's
Content-Security-Policy allows exactly that script by its SHA-256 and nothing else inline.

The client uses only the public REST API and WebSocket protocol (docs/), like a native client.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache
from pathlib import Path

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

__all__ = ["WEB_DIR", "csp_for", "routes"]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
#: ``node_modules`` of the checkout (``scripts/setup.sh`` runs ``npm ci`` there).
MODULES_DIR = Path(__file__).resolve().parent.parent.parent / "node_modules"
PACKAGE_JSON = MODULES_DIR.parent / "package.json"

#: Bare specifiers the client imports, and where each is served.
IMPORTS = {
    "preact": "/vendor/preact/dist/preact.mjs",
    "preact/hooks": "/vendor/preact/hooks/dist/hooks.mjs",
    "htm": "/vendor/htm/dist/htm.mjs",
    "htm/preact": "/vendor/htm/preact/index.mjs",
    "uplot": "/vendor/uplot/dist/uPlot.esm.js",
}

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def csp_for(script_hashes: list[str]) -> str:
    """The page's policy: everything from this origin, one inline script by hash, no framing."""
    scripts = " ".join(f"'{h}'" for h in script_hashes)
    return (
        "default-src 'self'; "
        f"script-src 'self' {scripts}; "
        "style-src 'self'; "
        "img-src 'self' blob: data:; "
        "connect-src 'self'; "
        "manifest-src 'self'; "
        "worker-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@lru_cache(maxsize=1)
def _page() -> tuple[bytes, str]:
    """index.html with the import map filled in, and its CSP (computed once per process)."""
    importmap = json.dumps({"imports": IMPORTS}, separators=(",", ":"))
    digest = base64.b64encode(hashlib.sha256(importmap.encode()).digest()).decode()
    html = (WEB_DIR / "index.html").read_text(encoding="utf-8").replace("{{IMPORTMAP}}", importmap)
    return html.encode(), csp_for([f"sha256-{digest}"])


async def index(request: Request) -> Response:
    """The client's shell page (public: it holds no data; the client signs in through the API)."""
    body, csp = _page()
    return Response(
        body,
        media_type="text/html; charset=utf-8",
        headers={**_SECURITY_HEADERS, "Content-Security-Policy": csp, "Cache-Control": "no-cache"},
    )


async def service_worker(request: Request) -> Response:
    """Served from the root so its scope covers the whole client."""
    return Response(
        (WEB_DIR / "sw.js").read_bytes(),
        media_type="text/javascript; charset=utf-8",
        headers={**_SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


class _Static:
    """StaticFiles with security headers and revalidation (ETag), compressed for browsers."""

    def __init__(self, directory: Path) -> None:
        self.files = StaticFiles(directory=directory, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in _SECURITY_HEADERS.items()]
                headers.append((b"cache-control", b"no-cache"))
                message["headers"] = headers
            await send(message)

        await self.files(scope, receive, with_headers)


def _runtime_packages() -> list[str]:
    """The ``dependencies`` of package.json: what the browser may load (not devDependencies)."""
    try:
        return sorted(json.loads(PACKAGE_JSON.read_text(encoding="utf-8"))["dependencies"])
    except (OSError, ValueError, KeyError):
        return []


def _mount(path: str, directory: Path) -> Mount:
    return Mount(path, app=GZipMiddleware(_Static(directory), minimum_size=512))


routes: list[BaseRoute] = [
    Route("/", index, methods=["GET"], include_in_schema=False),
    Route("/sw.js", service_worker, methods=["GET"], include_in_schema=False),
    _mount("/web", WEB_DIR),
    *(_mount(f"/vendor/{name}", MODULES_DIR / name) for name in _runtime_packages()),
]
