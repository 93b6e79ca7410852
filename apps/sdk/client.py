"""The REST side of the SDK: app tokens (fetched and refreshed), the bot API, subscriptions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["AppClient", "ZzdApiError"]


class ZzdApiError(Exception):
    """An error answer: ``status``, the stable ``code`` (switch on it), ``message`` and ``data``."""

    def __init__(self, status: int, code: str, message: str, data: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.data = status, code, message, data


class AppClient:
    """One app's connection to ZZD. Tokens are fetched on first use and refreshed before they expire.

    ``retry_rate_limited``: on 429 wait ``Retry-After`` and try again (up to that many times).
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 10.0,
        retry_rate_limited: int = 2,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._id, self._secret = client_id, client_secret
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._retries = retry_rate_limited

    async def __aenter__(self) -> AppClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # ---------------------------------------------------------------- tokens
    async def token(self, *, fresh: bool = False) -> str:
        """A valid app token; a new one when less than a fifth of its life (or ``fresh``) is left."""
        async with self._lock:
            if fresh or self._token is None or time.monotonic() >= self._expires:
                r = await self._http.post(
                    "/api/v1/auth/token",
                    json={"grant_type": "client_credentials", "client_id": self._id, "client_secret": self._secret},
                )
                body = _json(r)
                self._token = str(body["access_token"])
                self._expires = time.monotonic() + 0.8 * float(body["expires_in"])
            return self._token

    async def request(
        self, method: str, path: str, *, json: Any = None, params: Any = None, key: str | None = None
    ) -> Any:
        """One API call as the app; refreshes the token once on 401 and waits out 429s."""
        headers = {"Idempotency-Key": key} if key is not None else {}
        fresh = False
        for attempt in range(self._retries + 2):
            headers["Authorization"] = f"Bearer {await self.token(fresh=fresh)}"
            r = await self._http.request(method, path, json=json, params=params, headers=headers)
            if r.status_code == 401 and not fresh:
                fresh = True
                continue
            if r.status_code == 429 and attempt < self._retries:
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                continue
            return _json(r)
        return _json(r)

    # ---------------------------------------------------------------- bot API
    async def me(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/v1/bot/me"))

    async def preview(self, selector: str | dict[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", "/api/v1/bot/audience/preview", json={"selector": selector}))

    async def send_notice(
        self, selector: str | dict[str, Any], title: str, *, key: str, body: str = "", **fields: Any
    ) -> dict[str, Any]:
        """A work notice (``priority="urgent"`` for a DING); ``key`` makes a retry safe."""
        payload = {"selector": selector, "title": title, "body": body, **fields}
        return dict(await self.request("POST", "/api/v1/bot/notices", json=payload, key=key))

    async def notice(self, notice_id: int) -> dict[str, Any]:
        return dict(await self.request("GET", f"/api/v1/bot/notices/{notice_id}"))

    async def progress(self, notice_id: int) -> dict[str, Any]:
        """The live count of one of the app's notices (``notice_total.acked``: checked in)."""
        return dict(await self.request("GET", f"/api/v1/bot/notices/{notice_id}/progress"))

    async def check_in(
        self, notice_id: int, person_id: int, *, reply: str | None = None, position_id: int | None = None
    ) -> dict[str, Any]:
        """Acknowledge the app's own notice for an attendee (for one ``position_id`` of theirs, or all)."""
        body: dict[str, Any] = {"person_id": person_id}
        if reply is not None:
            body["reply"] = reply
        if position_id is not None:
            body["position_id"] = position_id
        return dict(await self.request("POST", f"/api/v1/bot/notices/{notice_id}/check-ins", json=body))

    async def create_tasks(self, selector: str | dict[str, Any], title: str, *, key: str, **fields: Any) -> list[Any]:
        payload = {"selector": selector, "title": title, **fields}
        return list((await self.request("POST", "/api/v1/bot/tasks", json=payload, key=key))["tasks"])

    async def act(self, task_id: int, action: str, version: int, **fields: Any) -> dict[str, Any]:
        body = {"action": action, "version": version, **fields}
        return dict(await self.request("POST", f"/api/v1/bot/tasks/{task_id}/actions", json=body))

    async def task(self, task_id: int) -> dict[str, Any]:
        return dict(await self.request("GET", f"/api/v1/bot/tasks/{task_id}"))

    async def report(self, report_id: int) -> dict[str, Any]:
        return dict(await self.request("GET", f"/api/v1/bot/reports/{report_id}"))

    async def post_message(self, conversation_id: int, body: str, *, key: str) -> dict[str, Any]:
        path = f"/api/v1/bot/conversations/{conversation_id}/messages"
        return dict(await self.request("POST", path, json={"body": body}, key=key))

    async def unit(self, ref: str | int) -> dict[str, Any]:
        """A unit of the app's subtree by code (``"330802"``), ``"#17"`` or id (``17``)."""
        ref = f"#{ref}" if isinstance(ref, int) else ref
        # quoted: a bare "#17" would be read as the URL's fragment and the request would lose it
        return dict(await self.request("GET", f"/api/v1/bot/org/units/{quote(ref, safe='')}"))

    # ---------------------------------------------------------------- subscriptions
    async def subscribe(
        self, event_types: list[str], *, url: str | None = None, filters: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A webhook subscription (with ``url``; the answer's ``secret`` is shown once) or a stream one."""
        body: dict[str, Any] = {"mode": "webhook" if url else "stream", "event_types": event_types}
        if url:
            body["url"] = url
        if filters:
            body["filters"] = filters
        return dict(await self.request("POST", "/api/v1/bot/subscriptions", json=body))

    async def subscriptions(self) -> list[Any]:
        return list((await self.request("GET", "/api/v1/bot/subscriptions"))["subscriptions"])

    async def subscription(self, subscription_id: int) -> dict[str, Any]:
        return dict(await self.request("GET", f"/api/v1/bot/subscriptions/{subscription_id}"))

    async def set_subscription_status(self, subscription_id: int, status: str) -> dict[str, Any]:
        """``"disabled"``, or ``"active"`` again (failures reset; what waited is sent)."""
        path = f"/api/v1/bot/subscriptions/{subscription_id}"
        return dict(await self.request("PATCH", path, json={"status": status}))

    async def rotate_signing_secret(self, subscription_id: int, *, overlap_seconds: int = 86_400) -> dict[str, Any]:
        """A webhook's new ``whsec_`` secret (``{"secret", "previous_secret_expires_at"}``); both sign meanwhile."""
        path = f"/api/v1/bot/subscriptions/{subscription_id}/secret"
        return dict(await self.request("POST", path, json={"overlap_seconds": overlap_seconds}))

    async def download(self, digest: str) -> bytes:
        """A photo the app may see (a report's of its subtree, its tasks', its own), as bytes."""
        headers = {"Authorization": f"Bearer {await self.token()}"}
        r = await self._http.get(f"/api/v1/bot/uploads/{quote(digest, safe='')}", headers=headers)
        if r.status_code == 401:
            headers["Authorization"] = f"Bearer {await self.token(fresh=True)}"
            r = await self._http.get(f"/api/v1/bot/uploads/{quote(digest, safe='')}", headers=headers)
        if not r.is_success:
            _json(r)  # raises ZzdApiError
        return r.content

    async def attempts(self, subscription_id: int, limit: int = 50, *, before: int | None = None) -> list[Any]:
        """The delivery log, newest first; ``before`` (the last ``attempt_id`` of a page) reads the next."""
        path = f"/api/v1/bot/subscriptions/{subscription_id}/attempts"
        params: dict[str, Any] = {"limit": limit} if before is None else {"limit": limit, "before": before}
        return list((await self.request("GET", path, params=params))["attempts"])

    async def deliveries(
        self, subscription_id: int, limit: int = 50, *, state: str | None = None, before: int | None = None
    ) -> list[Any]:
        """Deliveries, newest first (``state``: pending, delivered, dead); ``before`` a ``delivery_id``."""
        params: dict[str, Any] = {"limit": limit}
        if state is not None:
            params["state"] = state
        if before is not None:
            params["before"] = before
        path = f"/api/v1/bot/subscriptions/{subscription_id}/deliveries"
        return list((await self.request("GET", path, params=params))["deliveries"])

    async def redeliver(self, subscription_id: int, **which: Any) -> int:
        path = f"/api/v1/bot/subscriptions/{subscription_id}/redeliver"
        return int((await self.request("POST", path, json=which))["redelivering"])

    def stream(self, *, reconnect: bool = True) -> AsyncIterator[Any]:
        """Events of the app's stream subscriptions (``StreamEvent``; call ``ack()`` on each)."""
        from apps.sdk.stream import consume

        return consume(self, reconnect=reconnect)


def _json(r: httpx.Response) -> Any:
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.is_success:
        return body
    err = body.get("error", {}) if isinstance(body, dict) else {}
    raise ZzdApiError(r.status_code, str(err.get("code", "http_error")), str(err.get("message", r.text[:200])),
                      dict(err.get("data") or {}))  # fmt: skip
