"""The HTTP side of webhook delivery (``apps.delivery.Sender``), on httpx.

Why these rules: redirects are not followed (a redirect could lead past the
address allowlist, and the target is the app's to fix), the answer is read
only up to ``MAX_EXCERPT_READ`` bytes (a receiver answering a huge body costs
nothing), and the caller bounds the whole attempt with a timeout.
"""

from __future__ import annotations

import httpx

from apps.delivery import Outcome

__all__ = ["HttpxSender"]

MAX_EXCERPT_READ = 64 * 1024


class HttpxSender:
    def __init__(self, timeout: float, max_connections: int) -> None:
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False,  # no proxy from the environment: the allowlist checked the real target
        )

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Outcome:
        try:
            async with self._client.stream("POST", url, headers=headers, content=body) as resp:
                got = b""
                async for chunk in resp.aiter_raw():
                    got += chunk
                    if len(got) >= MAX_EXCERPT_READ:
                        break
                excerpt = got[:500].decode("utf-8", "replace")
                if 300 <= resp.status_code < 400:
                    return Outcome(resp.status_code, excerpt, "redirect not followed")
                return Outcome(resp.status_code, excerpt, None if resp.is_success else f"HTTP {resp.status_code}")
        except httpx.HTTPError as exc:
            return Outcome(None, error=f"{type(exc).__name__}: {exc}"[:200])

    async def close(self) -> None:
        await self._client.aclose()
