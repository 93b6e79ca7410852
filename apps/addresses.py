"""Where webhooks may go: the target allowlist, checked before any request (docs/webhooks.md).

Why: a webhook URL is chosen by an app, and the server makes the request from
inside the government network. Without a check an app could make ZZD call
``http://127.0.0.1:6379`` or a metadata service. Every address a host name
resolves to must be allowed: public (globally routable) addresses when the
deployment allows them, and otherwise only networks listed by the operator
(``ZZD_WEBHOOK_ALLOWED_NETWORKS``; loopback only where listed, as tests do).
The check runs when a subscription is made and again before every attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from kernel.errors import BadRequest, ErrorCode, Forbidden

__all__ = ["AddressPolicy"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressPolicy:
    def __init__(self, allowed_networks: Iterable[str], *, allow_public: bool) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        self._public = allow_public

    def allows(self, ip: IPAddress) -> bool:
        if any(ip in n for n in self._networks):
            return True
        return self._public and ip.is_global

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
        host = parts.hostname
        try:
            ips: list[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise BadRequest("the url's host does not resolve", data={"field": "url", "host": host}) from exc
            ips = [ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos]
        refused = sorted({str(ip) for ip in ips if not self.allows(ip)})
        if refused or not ips:
            raise Forbidden(
                "the url's address is not an allowed webhook target",
                code=ErrorCode.ADDRESS_NOT_ALLOWED,
                data={"host": host, "addresses": refused[:5]},
            )
