"""The HTTP side of webhook delivery (``apps.delivery.Sender``), on aiohttp.

Why these rules: redirects are not followed (a redirect could lead past the
address allowlist, and the target is the app's to fix), the answer is read
only up to ``MAX_EXCERPT_READ`` bytes and never decompressed (a receiver
answering a huge or compressed body costs nothing), no cookies are kept or
sent, no proxy from the environment is used, and the caller bounds the whole
attempt with a timeout.

Why aiohttp and not httpx (which the SDK and the notifier use): a webhook
attempt is the delivery processes' whole work, and httpx's request machinery
was most of its CPU (``bench/apps_attempt_cpu.py``: 2.75 ms per attempt
beside 2.63 ms per bare httpx post); aiohttp's client, with its C HTTP
parser, costs a fraction of that per request (BENCHMARKS.md, issue 13).

Why a resolver of our own (the DNS-rebinding pin): the client would
otherwise resolve the target's name itself, after and independently of the
allowlist check, so a name that answered with a public address for the check
could answer ``127.0.0.1`` or ``169.254.169.254`` for the request. Here every
new connection asks :class:`PinnedResolver`, which resolves the name once
through the same :class:`~apps.addresses.AddressPolicy`, refuses unless
*every* address is allowed, and returns exactly those addresses, which are
the only ones the connector connects to. The URL is untouched, so the
``Host`` header, TLS SNI and the certificate check still use the original
name. aiohttp hands an address literal (``http://10.0.0.7/``) to no
resolver, so the socket factory checks the address of every socket it opens
as well: nothing connects to an address the policy refuses.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from apps.addresses import AddressPolicy
from apps.delivery import Outcome
from kernel.errors import ZzdError

__all__ = ["AddressRefused", "AiohttpSender", "PinnedResolver"]

MAX_EXCERPT_READ = 64 * 1024
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
#: What the connector hands a socket factory: ``getaddrinfo``'s tuple for one address.
_AddrInfo = tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]]


class AddressRefused(OSError):
    """A webhook target's name resolved to (or is) an address the allowlist refuses."""


class PinnedResolver(AbstractResolver):
    """Answers with the policy's resolution of a name, only when every address it got is allowed."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            ips = await self._policy.resolve(host, port)
        except ZzdError as exc:
            refused = ", ".join(exc.data.get("addresses") or [])
            raise AddressRefused(f"{exc.code}: {host} → {refused or exc.message}") from exc
        return [
            ResolveResult(
                hostname=host,
                host=str(ip),
                port=port,
                family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                proto=0,
                flags=_NUMERIC,
            )
            for ip in ips  # every one was checked; the connector tries them in this order
        ]

    async def close(self) -> None:
        return None


class AiohttpSender:
    """Posts signed webhook bodies through one aiohttp session: ``max_connections`` in all, kept alive 5 s."""

    def __init__(
        self, timeout: float, max_connections: int, policy: AddressPolicy, *, tls: ssl.SSLContext | None = None
    ) -> None:
        """``tls``: certificates to trust (tests bring their own authority); by default the system's, verified."""
        self._timeout = timeout
        self._max_connections = max_connections
        self._policy = policy
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None

    def _socket(self, addr_info: _AddrInfo) -> socket.socket:
        """The last check: every socket goes to an allowed address, names and address literals alike."""
        family, type_, proto, _, sockaddr = addr_info
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not self._policy.allows(ip):
            raise AddressRefused(f"address_not_allowed: {ip}")
        return socket.socket(family=family, type=type_, proto=proto)

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use: aiohttp binds its session and connector to the running event loop.
        connector = aiohttp.TCPConnector(
            resolver=PinnedResolver(self._policy),
            use_dns_cache=False,  # each new connection resolves and checks; a kept-alive one stays on its address
            limit=self._max_connections,
            limit_per_host=0,  # the worker bounds each endpoint (DeliveryPolicy.per_endpoint); apps may share a host
            keepalive_timeout=5.0,
            socket_factory=self._socket,
            ssl=self._tls if self._tls is not None else True,  # verified, against the URL's own host name
        )
        return aiohttp.ClientSession(
            connector=connector,
            # Per phase, like the caller's bound: the caller's asyncio.timeout ends the attempt first.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=self._timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),  # ask for the answer as it is: the excerpt is read raw
            trust_env=False,
        )

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Outcome:
        if self._session is None:
            self._session = self._open()
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                got = b""
                while len(got) < MAX_EXCERPT_READ:
                    chunk = await resp.content.read(MAX_EXCERPT_READ - len(got))
                    if not chunk:
                        break
                    got += chunk
                excerpt = got[:500].decode("utf-8", "replace")
                status = resp.status
                if 300 <= status < 400:
                    return Outcome(status, excerpt, "redirect not followed")
                return Outcome(status, excerpt, None if 200 <= status < 300 else f"HTTP {status}")
        except TimeoutError:
            return Outcome(None, error=f"no answer within {self._timeout:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(None, error=_describe(exc)[:200])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _describe(exc: Exception) -> str:
    """``Type: message``, with a refused address said plainly rather than inside aiohttp's connector text."""
    cause = getattr(exc, "os_error", None)
    if isinstance(cause, AddressRefused):
        return f"{type(exc).__name__}: {cause}"
    return f"{type(exc).__name__}: {exc}"
