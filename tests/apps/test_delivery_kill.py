"""A server process killed (kill -9) in the middle of webhook deliveries: every event is still delivered
at least once, with the same ``webhook-id``, by the other process once the lease lapses; and two
processes never post the same attempt (PostgreSQL, Redis, real processes, a real receiver)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.registry import AppRegistry, NewApp
from kernel.clock import SystemClock
from kernel.db.database import Database
from org_tree.index import OrgIndexHolder
from org_tree.jurisdiction import SYSTEM
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from tests.apps.conftest import populate
from tests.apps.helpers import subscribe_webhook
from tests.apps.receiver import Behaviour, receiver
from tests.conftest import make_settings
from tests.procs import zzd_processes
from tests.services import redis_prefix
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

REPORTS = 6
ENV = {
    "ZZD_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    "ZZD_WEBHOOK_ALLOW_PUBLIC": "false",
    "ZZD_WEBHOOK_TIMEOUT": "60",
    "ZZD_DELIVERY_LEASE": "3",
    "ZZD_DELIVERY_POLL_INTERVAL": "0.1",
    "ZZD_WEBHOOK_BACKOFF_BASE": "0.2",
    "ZZD_WEBHOOK_BACKOFF_CAP": "0.5",
}


async def tree_with_app(
    url: str, tmp_path: Path, name: str = "断电平台", scopes: tuple[str, ...] = ("events:report.filed",)
) -> tuple[str, str]:
    """The served tree in ``url`` and an app with ``scopes`` over its county: its client id and secret."""
    await populate(url, tmp_path)
    db = Database(url)
    try:
        holder = OrgIndexHolder(db)
        await holder.load()
        clock = SystemClock()
        org = OrgService(db, clock, holder)
        reg = AppRegistry(db, clock, org, PersonDirectory(db, clock), lambda: holder.index)
        app, secret = await reg.create(SYSTEM, NewApp(name, "990101", "990101", "*@990101", list(scopes)))
        return app.client_id, secret.secret
    finally:
        await db.dispose()


async def _file_reports(url: str, n: int) -> None:
    from messaging.tasks.reports import Filing
    from zzd.services import Services

    svc = Services.build(make_settings(url))
    try:
        await svc.org_index.load()
        idx = svc.org_index.index
        grid = idx.children(idx.unit("990101001001"))[0]
        worker = await svc.persons.create("网格员")
        pos = next(idx.position_id(k) for k in idx.unit_slots(grid) if idx.position_role(k).key == "grid_worker")
        await svc.org.handover(SYSTEM, pos, worker.id)
        for i in range(n):
            await svc.reports.file(worker.id, pos, Filing(f"k{i}", "river_litter", f"垃圾{i}", 28.9, 118.8))
    finally:
        await svc.db.dispose()


async def test_a_killed_process_loses_no_event_and_the_retry_keeps_its_webhook_id(
    own_pg_database: str, tmp_path: Path, redis_url: str
) -> None:
    url = own_pg_database
    client_id, client_secret = await tree_with_app(url, tmp_path)
    async with receiver() as rec:
        rec.behaviours["/kill"] = Behaviour(hang=30.0)  # the first process is mid-request when it dies
        prefix = redis_prefix()
        async with zzd_processes(url, redis_url, 1, prefixes=[prefix], **ENV) as (a,):
            rec.secrets["/kill"] = [await subscribe_webhook(a.http, client_id, client_secret, rec.base + "/kill")]
            await _file_reports(url, REPORTS)
            await wait_until(lambda: len(rec.on("/kill")) >= 4, timeout=30, what="requests in flight")
            a.proc.kill()  # SIGKILL: no drain, no release of leases
            await a.proc.wait()
        in_flight = {g.headers["webhook-id"] for g in rec.on("/kill")}
        rec.behaviours["/kill"] = Behaviour()
        async with zzd_processes(url, redis_url, 2, prefixes=[prefix, prefix], **ENV):
            await wait_until(lambda: len({g.event["id"] for g in rec.delivered("/kill")}) == REPORTS, timeout=60,
                             what="every event delivered after the kill")  # fmt: skip
        delivered = rec.delivered("/kill")
        ids = {g.event["id"] for g in delivered}
        assert in_flight <= ids  # what was in flight at the kill arrived later under the same webhook-id
        assert all(g.headers["webhook-id"] == g.event["id"] for g in delivered)
        # two live processes never posted one delivery twice after the restart
        assert len(delivered) == len(ids), json.dumps([g.event["id"] for g in delivered])
