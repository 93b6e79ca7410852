"""Shared by the platform tests: an administrator, an app made through the REST API, app tokens."""

from __future__ import annotations

from typing import Any

import httpx

from org_tree.jurisdiction import SYSTEM
from tests.client import login, new_person
from tests.conftest import RunningServer
from tests.org_server import auth

__all__ = [
    "COUNTY",
    "OTHER_COUNTY",
    "VILLAGE",
    "admin_token",
    "app_token",
    "file_report_with_photo",
    "make_app",
    "subscribe_webhook",
]

COUNTY, OTHER_COUNTY = "990101", "990102"
VILLAGE = "990101001001"


async def admin_token(rs: RunningServer, unit: str | None = COUNTY, perms: frozenset[str] = frozenset({"apps"})) -> str:
    """A new person holding ``perms`` over ``unit``'s subtree (None: the whole tree); returns their token."""
    s = rs.services_obj  # type: ignore[attr-defined]
    pid, lg = await new_person(s, "应用管理员")
    await s.grants.grant(SYSTEM, pid, unit, perms)
    return str((await login(rs.http, lg))["access_token"])


async def make_app(
    rs: RunningServer, token: str, *, name: str, scopes: list[str], subtree: str = COUNTY, **extra: Any
) -> dict[str, Any]:
    body = {"name": name, "owning_unit": subtree, "subtree": subtree, "visibility": f"*@{subtree}", "scopes": scopes}
    if "visibility" in extra:
        body["visibility"] = extra.pop("visibility")
    async with httpx.AsyncClient(base_url=rs.http, headers=auth(token)) as h:
        r = await h.post("/api/v1/apps", json={**body, **extra})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def app_token(rs: RunningServer, client_id: str, secret: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=rs.http) as h:
        return await h.post(
            "/api/v1/auth/token",
            json={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )


async def grid_worker(rs: RunningServer, village: str = VILLAGE) -> tuple[int, int]:
    """A new person seated as the grid worker of ``village``'s first grid: (person id, position id)."""
    s = rs.services_obj  # type: ignore[attr-defined]
    idx = s.org_index.index
    grid = idx.children(idx.unit(village))[0]
    worker, _ = await new_person(s)
    pos = next(idx.position_id(k) for k in idx.unit_slots(grid) if idx.position_role(k).key == "grid_worker")
    await s.org.handover(SYSTEM, pos, worker)
    return worker, pos


async def file_report(rs: RunningServer, who: tuple[int, int], key: str, category: str = "river_litter") -> Any:
    from messaging.tasks.reports import Filing

    s = rs.services_obj  # type: ignore[attr-defined]
    report, _ = await s.reports.file(who[0], who[1], Filing(key, category, f"河里有垃圾 {key}", 28.9, 118.8))
    return report


async def file_report_with_photo(rs: RunningServer, key: str) -> tuple[bytes, str]:
    """A grid worker of VILLAGE uploads a JPEG and files a river_litter report with it: (bytes, digest)."""
    import hashlib
    import secrets

    from messaging.tasks.reports import Filing

    s = rs.services_obj  # type: ignore[attr-defined]
    worker, w_pos = await grid_worker(rs)
    photo = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + secrets.token_bytes(3000)
    digest = hashlib.sha256(photo).hexdigest()

    async def chunks() -> Any:
        yield photo

    await s.attachments.upload(worker, chunks(), sha256=digest, length=len(photo))
    await s.reports.file(worker, w_pos, Filing(key, "river_litter", "河里有垃圾", 28.9, 118.8, photos=[digest]))
    return photo, digest


async def subscribe_webhook(http: str, client_id: str, client_secret: str, url: str) -> str:
    """Take an app token at server ``http`` and subscribe ``url`` to ``report.filed``; returns the signing secret."""
    async with httpx.AsyncClient(base_url=http) as h:
        grant = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
        tok = (await h.post("/api/v1/auth/token", json=grant)).json()["access_token"]
        sub = {"mode": "webhook", "url": url, "event_types": ["report.filed"]}
        r = await h.post("/api/v1/bot/subscriptions", headers={"Authorization": f"Bearer {tok}"}, json=sub)
        assert r.status_code == 201, r.text
        return str(r.json()["secret"])
