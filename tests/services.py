"""Find the PostgreSQL and Redis services; skip without them locally, fail in CI.

CI sets ``CI=true``: there a missing service is a failure, never a skip
(docs/style.md lesson 11, Synapse's SYNAPSE_POSTGRES switch).
"""

from __future__ import annotations

import os
import secrets
import socket
from urllib.parse import urlsplit

import pytest

PG_HOST = os.environ.get("ZZD_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ZZD_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("ZZD_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("ZZD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# pytest-xdist names its workers gw0, gw1, …: each worker's databases and Redis keys carry its name,
# so a leftover (a killed run) says which worker made it and two workers never pick the same name.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def unique_name(prefix: str, sep: str = "_") -> str:
    """``prefix`` + this worker's name + a random tag: a database or key prefix no other test or run uses."""
    return sep.join(p for p in (prefix, WORKER, secrets.token_hex(4)) if p)


def redis_prefix() -> str:
    """A Redis key prefix of one test's own (tests share the service's database 0, never its keys)."""
    return unique_name("zzdtest", "-")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(service: str) -> None:
    redis = urlsplit(REDIS_URL)
    host, port = (PG_HOST, PG_PORT) if service == "postgres" else (redis.hostname or "127.0.0.1", redis.port or 6379)
    if not _reachable(host, port):
        msg = f"{service} is not reachable at {host}:{port}"
        if IN_CI:
            pytest.fail(msg + " (mandatory in CI)")
        pytest.skip(msg)


def pg_url(dbname: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"
