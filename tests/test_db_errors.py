"""Database overload and outage errors reach clients as the retryable ``unavailable``, never a 500."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
from sqlalchemy import text

from kernel.db.database import Database
from kernel.errors import Unavailable
from messaging.db_errors import with_db_retry

pytestmark = pytest.mark.postgres


async def test_an_exhausted_pool_is_unavailable_not_internal(pg_database: str) -> None:
    db = Database(pg_database, pool_size=1, pool_timeout=0.2)  # 1 pooled + 2 overflow connections
    try:
        async with AsyncExitStack() as held:
            for _ in range(3):
                _ = await held.enter_async_context(db.read())

            async def one_more() -> int:
                async with db.read() as conn:
                    return int((await conn.execute(text("SELECT 1"))).scalar_one())

            with pytest.raises(Unavailable):
                await with_db_retry(one_more)
        assert await with_db_retry(one_more) == 1  # connections back: served again
    finally:
        await db.dispose()
