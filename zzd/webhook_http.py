"""The HTTP side of webhook delivery (``apps.delivery.Sender``), on httpx.

Why these rules: redirects are not followed (a redirect could lead past the
address allowlist, and the target is the app's to fix), the answer is read
only up to ``MAX_EXCERPT_READ`` bytes (a receiver answering a huge body costs
nothing), and the caller bounds the whole attempt with a timeout.

Why a network backend of our own (the DNS-rebinding pin): httpx would
otherwise resolve the target's name itself, after and independently of the
allowlist check, so a name that answered with a public address for the check
could answer ``127.0.0.1`` or ``169.254.169.254`` for the request. Here every
new connection is made by :class:`PinnedBackend`: it resolves the name once
through the same :class:`~apps.addresses.AddressPolicy`, refuses the
connection unless *every* address is allowed, and connects to one of exactly
those addresses. The URL is untouched, so the ``Host`` header, TLS SNI and
certificate check still use the original name. httpx has no public argument
for httpcore's ``network_backend``, so the transport builds its own httpcore
pool (the library's documented extension point, one level down).
"""

from __future__ import annotations

import typing

import httpcore
import httpx

from apps.addresses import AddressPolicy
from apps.delivery import Outcome
from kernel.errors import ZzdError

__all__ = ["HttpxSender", "PinnedBackend"]

MAX_EXCERPT_READ = 64 * 1024


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy resolved and allowed, in the same step."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._policy.resolve(host, port)
        except ZzdError as exc:
            refused = ", ".join(exc.data.get("addresses") or [])
            raise httpcore.ConnectError(f"{exc.code}: {host} → {refused or exc.message}") from exc
        last: Exception | None = None
        for ip in addresses:  # every one was checked; try them in the resolver's order
            try:
                return await self._inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are never sent to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, backend: httpcore.AsyncNetworkBackend, max_connections: int) -> None:
        super().__init__(trust_env=False)  # no proxy from the environment: the backend checked the real target
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


class HttpxSender:
    def __init__(self, timeout: float, max_connections: int, policy: AddressPolicy) -> None:
        self._client = httpx.AsyncClient(
            transport=_PinnedTransport(PinnedBackend(policy), max_connections),
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            trust_env=False,
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
