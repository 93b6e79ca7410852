"""A second process for tests/admin/test_audit_seal.py: audited writes from its own pool, sealed by its own sealer.

    python -m tests.admin.audit_writer URL COUNT TAG

Writes COUNT entries (``test.concurrent``, detail ``{"w": TAG, "i": …}``), each
in its own transaction, up to 8 at once, while a :class:`kernel.audit.Sealer`
runs beside them as in a server; prints ``{"sealed": n, "busy": n}`` (what this
process's sealer chained, and how often it found another sealer at work).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime

from kernel.audit import AuditEntry, Sealer, record
from kernel.db.database import Database


async def main(url: str, count: int, tag: str) -> None:
    db = Database(url)
    sealer = Sealer(db, os.environ["ZZD_AUDIT_KEY"].encode(), poll=0.2)  # the test's key (tests/conftest.py)
    sealing = asyncio.create_task(sealer.run())
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with gate, db.write() as conn:
            await record(conn, AuditEntry("test.concurrent", detail={"w": tag, "i": i}), datetime.now(UTC))

    try:
        await asyncio.gather(*(one(i) for i in range(count)))
        sealer.stop()  # one last pass, for what its own last commits rang
        await sealing
    finally:
        sealing.cancel()
        await db.dispose()
    print(json.dumps({"sealed": sealer.sealed, "busy": sealer.busy}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
