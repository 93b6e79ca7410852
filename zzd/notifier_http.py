"""``HttpNotifier``: escalations as a signed POST to an SMS/voice gateway (httpx + tenacity).

An HTTP adapter of the shell (the domain does no HTTP): it is an adapter
behind the ``Notifier`` protocol, like ``messaging/broker/redis.py`` behind
``Broker``. See ``messaging/notices/notifier.py`` for the wire contract
(signature header, idempotency key, which statuses are retried).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from messaging.notices.notifier import SIGNATURE_HEADER, Escalation, EscalationFailed, Notifier, sign

logger = logging.getLogger(__name__)

__all__ = ["HttpNotifier"]


class _Retryable(Exception):
    pass


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Retryable | httpx.TransportError)


class HttpNotifier:
    """Signed POST to an SMS/voice gateway.

    Args:
        url: the gateway endpoint.
        secret: the shared HMAC key (at least 16 bytes).
        client: an ``httpx.AsyncClient`` to reuse (one is created, and closed by :meth:`close`, if None).
        attempts: tries per escalation before giving up.
        backoff: first retry delay in seconds; doubles per try up to ``max_backoff``.
        timeout: per-request timeout in seconds.
    """

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        client: httpx.AsyncClient | None = None,
        attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the HttpNotifier secret must be at least 16 bytes")
        self._url = url
        self._secret = secret
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        #: Counters for metrics and tests.
        self.requests = 0
        self.failures = 0

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def escalate(self, escalation: Escalation) -> None:
        body = json.dumps(escalation.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            "Idempotency-Key": escalation.idempotency_key,
        }
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_retryable),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=self._backoff, max=self._max_backoff),
                reraise=True,
            ):
                with attempt:
                    await self._post(body, headers)
        except (httpx.HTTPError, _Retryable, EscalationFailed) as exc:
            self.failures += 1
            raise EscalationFailed(f"escalation {escalation.idempotency_key} failed: {exc}") from exc

    async def _post(self, body: bytes, headers: dict[str, str]) -> None:
        self.requests += 1
        resp = await self._client.post(self._url, content=body, headers=headers)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(f"gateway answered {resp.status_code}")
        if resp.status_code >= 300:
            raise EscalationFailed(f"gateway refused with {resp.status_code}")


if TYPE_CHECKING:
    _check: type[Notifier] = HttpNotifier
