"""``zzd delivery`` processes send the webhooks of servers run with ``ZZD_DELIVERY_IN_SERVER=false``.

Real processes on PostgreSQL and Redis and a real receiver: the server still
records the deliveries (its dispatcher) but sends none; the delivery process
sends every one, woken through Redis (its own poll is set to a minute, so only
the server's wake-up can make it deliver within the test); and a setup that
could not wake it is refused with a clear message.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from tests.apps.helpers import subscribe_webhook
from tests.apps.receiver import Behaviour, receiver
from tests.apps.test_delivery_kill import _file_reports, tree_with_app
from tests.procs import delivery_processes, zzd_processes
from tests.services import PG_HOST, PG_PORT, PG_USER, redis_prefix
from tests.waiting import wait_until
from zzd.cli import main

REPORTS = 6
ENV = {
    "ZZD_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    "ZZD_WEBHOOK_ALLOW_PUBLIC": "false",
    "ZZD_WEBHOOK_TIMEOUT": "60",
    "ZZD_NODE_ID": "server",
}


async def _leased_by(dbname: str) -> list[str]:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=dbname)
    try:
        rows = await conn.fetch("SELECT leased_by FROM app_deliveries WHERE leased_by IS NOT NULL")
        return [str(r["leased_by"]) for r in rows]
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
async def test_the_delivery_process_sends_what_the_server_records(
    own_pg_database: str, tmp_path: Path, redis_url: str
) -> None:
    url = own_pg_database
    client_id, client_secret = await tree_with_app(url, tmp_path)
    prefix = redis_prefix()
    async with receiver() as rec:
        rec.behaviours["/hook"] = Behaviour(hang=8.0)  # held open, so we can see who leased them
        async with zzd_processes(url, redis_url, 1, prefixes=[prefix], ZZD_DELIVERY_IN_SERVER="false", **ENV) as (a,):
            rec.secrets["/hook"] = [await subscribe_webhook(a.http, client_id, client_secret, rec.base + "/hook")]
            extra = {**ENV, "ZZD_NODE_ID": "sender", "ZZD_DELIVERY_POLL_INTERVAL": "60"}
            async with delivery_processes(url, redis_url, prefix, **extra):
                await _file_reports(url, REPORTS)
                # per-endpoint bound 4: the delivery process holds four requests open; the server none
                await wait_until(lambda: len(rec.on("/hook")) >= 4, timeout=20, what="the first requests")
                holders = await _leased_by(url.rsplit("/", 1)[1])
                assert len(holders) == 4 and all(h.startswith("sender:") for h in holders), holders
                rec.behaviours["/hook"] = Behaviour()
                await wait_until(lambda: len({g.event["id"] for g in rec.delivered("/hook")}) == REPORTS,
                                 timeout=30, what="every report delivered")  # fmt: skip
        got = rec.delivered("/hook")
        assert all(g.verified and g.headers["webhook-id"] == g.event["id"] for g in got)
        assert len(got) == REPORTS  # each once: nobody else posted them


def test_delivery_processes_without_redis_are_refused(tmp_path: Path) -> None:
    env = {"ZZD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'z.db'}", "ZZD_BROKER_URL": "memory://"}
    got = CliRunner().invoke(main, ["delivery"], env=env)
    assert got.exit_code != 0 and "zzd delivery needs Redis" in got.output
    got = CliRunner().invoke(main, ["serve", "--no-migrate"], env={**env, "ZZD_DELIVERY_IN_SERVER": "false"})
    assert got.exit_code != 0 and "ZZD_DELIVERY_IN_SERVER=false needs Redis" in got.output
