"""``zzd serve --workers N``: several processes on one port (issue 15 item 5).

What must hold: SQLite (and the in-process broker) refuse N > 1 with a message
naming what is missing; on PostgreSQL + Redis two workers both take clients on
the one port, a message between clients of different workers arrives, and one
SIGTERM to the parent drains every worker (each socket closed with 1012, the
server gone within the drain budget).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner, Result

from tests.client import Client
from tests.conftest import TEST_KEYS, free_port
from tests.procs import zzd_processes
from tests.test_reconnect_storm_s9 import _people_with_tokens
from tests.waiting import scaled, wait_until
from zzd.cli import main


def _serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    penv = {**os.environ, "ZZD_JWT_KEYS": TEST_KEYS, **env}
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "zzd", "serve", "--no-migrate", "--port", str(free_port()), *args],
        env=penv,
        capture_output=True,
        text=True,
        timeout=scaled(60),
        check=False,
    )


def _refused(monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> Result:
    """``zzd serve`` run in this process (a refusal comes before anything starts: no interpreter to boot).

    Serving at all would be the failure: it is replaced by one that says so instead of blocking the test.
    """

    def must_refuse(*_a: object, **_k: object) -> int:
        raise AssertionError("zzd serve started serving instead of refusing")

    monkeypatch.setattr("zzd.server.serve", must_refuse)
    monkeypatch.setattr("zzd.workers.serve_workers", must_refuse)
    argv = ["serve", "--no-migrate", "--port", str(free_port()), *args]
    return CliRunner().invoke(main, argv, env={"ZZD_JWT_KEYS": TEST_KEYS, **env})


def test_sqlite_refuses_several_workers(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    done = _refused(monkeypatch, "--workers", "2", ZZD_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/w.db")
    assert done.exit_code != 0
    assert "needs PostgreSQL" in done.stderr
    assert "SQLite database is one process" in done.stderr


def test_memory_broker_refuses_several_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    done = _refused(monkeypatch, "--workers", "3", ZZD_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/none")
    assert done.exit_code != 0
    assert "needs Redis" in done.stderr


def test_zero_workers_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    done = _refused(monkeypatch, "--workers", "0")
    assert done.exit_code != 0
    assert "ZZD_WORKERS" in done.stderr


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(300)  # two or three server processes start, each importing the app under CI's load
async def test_two_workers_share_the_port_deliver_across_and_drain(pg_database: str, redis_url: str) -> None:
    people = await _people_with_tokens(pg_database, 12)
    async with zzd_processes(pg_database, redis_url, 1, workers=2) as [server]:
        clients: list[Client] = []
        seen: dict[str, int] = {}

        async def spread() -> bool:
            """Connect one more person; true once /readyz shows sockets on two workers."""
            if len(clients) < len(people):
                clients.append(await Client.connect(server.ws, people[len(clients)][1]))
            async with httpx.AsyncClient() as http:  # a new TCP connection per probe lands on either worker
                r = await http.get(f"{server.http}/readyz", headers={"connection": "close"})
            seen[r.json()["node"]] = r.json()["connections"]
            return len([n for n, c in seen.items() if c > 0]) >= 2 and sum(seen.values()) == len(clients)

        await wait_until(spread, timeout=scaled(30), what="clients on both workers", interval=0.05)
        assert all(node.rsplit("-w", 1)[1] in {"0", "1"} for node in seen)

        # A ring of messages: with clients on both workers, at least two of its edges cross between them.
        n = len(clients)
        for i, c in enumerate(clients):
            reply = await c.send_message(people[(i + 1) % n][0], f"环 {i}", client_msg_id=f"ring{i}")
            assert reply["type"] == "ok", reply
        for i, c in enumerate(clients):
            bodies = {e["data"]["body"] for e in await c.wait_events(2)}
            assert bodies == {f"环 {i}", f"环 {(i - 1) % n}"}

        server.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        codes = await asyncio.gather(*(c.wait_closed(timeout=scaled(15)) for c in clients))
        assert {code for code, _ in codes} == {1012}
        assert await asyncio.wait_for(server.proc.wait(), scaled(20)) == 0
        assert time.monotonic() - t0 < scaled(15)
        log = "\n".join(server.log)
        assert "Traceback" not in log
        assert log.count("drained WebSockets") == 2


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(300)  # two or three server processes start, each importing the app under CI's load
async def test_a_killed_worker_is_replaced_under_a_new_node_id_and_serves(pg_database: str, redis_url: str) -> None:
    (a_id, a_tok), (b_id, b_tok) = await _people_with_tokens(pg_database, 2)
    async with zzd_processes(pg_database, redis_url, 1, workers=2) as [server]:
        started = re.findall(r"worker 0 started \(pid (\d+), node (\S+)\)", "\n".join(server.log))
        [(pid, node)] = started
        # uvicorn's "Application startup complete" comes just before the worker tells the parent it
        # serves; a kill in between is a failed start (the server stops), so wait for the second.
        await wait_until(
            lambda: f"worker node {node} serving" in "\n".join(server.log), timeout=scaled(20), what="worker 0 serving"
        )
        os.kill(int(pid), signal.SIGKILL)

        def replaced() -> str | None:
            found = re.findall(r"worker 0 started \(pid \d+, node (\S+)\)", "\n".join(server.log))
            return found[1] if len(found) > 1 else None

        new_node = await wait_until(replaced, timeout=scaled(20), what="a replacement for worker 0")
        assert new_node == f"{node}r1"
        assert "worker 0 (pid" in "\n".join(server.log) and "exited with -9" in "\n".join(server.log)

        nodes: set[str] = set()

        async def both_answer() -> bool:
            async with httpx.AsyncClient() as http:
                r = await http.get(f"{server.http}/readyz", headers={"connection": "close"})
            if r.status_code == 200:
                nodes.add(r.json()["node"])
            return new_node in nodes

        await wait_until(both_answer, timeout=scaled(60), what="the replacement answering", interval=0.05)
        a = await Client.connect(server.ws, a_tok)
        b = await Client.connect(server.ws, b_tok)
        reply = await a.send_message(b_id, "换了进程也送到", client_msg_id="after-kill")
        assert reply["type"] == "ok", reply
        [ev] = await b.wait_events(1)
        assert ev["data"]["body"] == "换了进程也送到"
        await a.close()
        await b.close()
        assert server.proc.returncode is None  # the supervisor kept serving


@pytest.mark.redis
@pytest.mark.slow  # multi-process: a supervisor and the worker processes it starts and restarts
@pytest.mark.timeout(300)
def test_a_worker_that_cannot_start_stops_the_server_instead_of_restarting_for_ever(redis_url: str) -> None:
    done = _serve(
        "--workers",
        "2",
        ZZD_DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing_listens_here",
        ZZD_REDIS_URL=redis_url,
        ZZD_REDIS_PREFIX=f"zzdtest-{os.getpid()}",
    )
    assert done.returncode == 1
    assert "before it started serving: stopping" in done.stderr
    assert "starting a new one" not in done.stderr
