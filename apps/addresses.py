"""Where webhooks may go: the target allowlist, checked before any request (docs/webhooks.md).

Why: a webhook URL is chosen by an app, and the server makes the request from
inside the government network. Without a check an app could make ZZD call
``http://127.0.0.1:6379`` or a metadata service. Every address a host name
resolves to must be allowed: public (globally routable) addresses when the
deployment allows them, and otherwise only networks listed by the operator
(``ZZD_WEBHOOK_ALLOWED_NETWORKS``; loopback only where listed, as tests do).
The check runs when a subscription is made and again before every attempt.

Why :meth:`AddressPolicy.resolve` and not only :meth:`check`: a name checked
now and resolved again by the HTTP client a moment later can answer
differently the second time (DNS rebinding: a public address for the check,
``127.0.0.1`` or ``169.254.169.254`` for the request). So the connection
itself asks ``resolve`` — one resolution, every address checked — and
connects only to an address it returned (``zzd/webhook_http.py``), with the
original name kept for ``Host`` and TLS (SNI, certificate). The resolver is a
constructor argument so tests can feed it a mapping of their own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from kernel.errors import BadRequest, ErrorCode, Forbidden

__all__ = ["AddressPolicy", "Resolver", "system_resolver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses`` (text); raises ``OSError`` when the name does not resolve.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``), off the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(i[4][0]) for i in infos]


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: a NAT64 gateway's IPv4 target
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_V4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 (SIIT)
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (:: and ::1 are not IPv4)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (NAT64, 6to4, Teredo, mapped, translated, compatible).

    Why: ``is_global`` judges only the IPv6 prefix, and Python counts 64:ff9b::/96, 2002::/16 and
    ``::a.b.c.d`` as global whatever IPv4 address they carry; on a network with a NAT64 gateway
    ``http://[64:ff9b::a00:7]/`` reaches 10.0.0.7."""
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _NAT64 or ip in _V4_TRANSLATED:
        return [low]
    if ip in _V4_COMPATIBLE and int(ip) > 1:
        return [low]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return []


class AddressPolicy:
    def __init__(
        self, allowed_networks: Iterable[str], *, allow_public: bool, resolver: Resolver = system_resolver
    ) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        self._public = allow_public
        self._resolver = resolver

    def allows(self, ip: IPAddress) -> bool:
        if any(ip in n for n in self._networks):
            return True
        if not self._public:
            return False
        if isinstance(ip, ipaddress.IPv6Address):
            if ip in _NAT64_LOCAL:  # RFC 8215: the IPv4 address may sit anywhere in it
                return False
            inner = _embedded_ipv4(ip)
            if inner:  # an IPv6 form of an IPv4 address reaches that address: it decides
                return all(self.allows(v4) for v4 in inner)
        return ip.is_global and not ip.is_multicast

    async def check(self, url: str) -> None:
        """Raise ``BadRequest`` for a malformed URL, ``Forbidden`` (``address_not_allowed``) for a refused target."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise BadRequest("url is not a valid URL", data={"field": "url"}) from exc
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
            raise BadRequest("url must be an http(s) URL of at most 2000 characters", data={"field": "url"})
        if parts.username or parts.password:
            raise BadRequest("url must not carry credentials", data={"field": "url"})
        await self.resolve(parts.hostname, port or (443 if parts.scheme == "https" else 80))

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` once; every address must be allowed, and these are the ones to connect to.

        Raises ``BadRequest`` when the name does not resolve, ``Forbidden``
        (``address_not_allowed``) when any address it resolves to is refused.
        """
        try:
            ips: list[IPAddress] = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            try:
                found = await self._resolver(host, port)
            except OSError as exc:
                raise BadRequest("the url's host does not resolve", data={"field": "url", "host": host}) from exc
            ips = [ipaddress.ip_address(a.split("%")[0]) for a in found]
        refused = sorted({str(ip) for ip in ips if not self.allows(ip)})
        if refused or not ips:
            raise Forbidden(
                "the url's address is not an allowed webhook target",
                code=ErrorCode.ADDRESS_NOT_ALLOWED,
                data={"host": host, "addresses": refused[:5]},
            )
        return list(dict.fromkeys(ips))
