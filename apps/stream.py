"""Stream mode: the same deliveries as webhooks, handed to an app's WebSocket and acknowledged by id.

Why the same delivery rows: an event reaches a stream subscription exactly as
it reaches a webhook one (same dispatch, same per-aggregate order, same
at-least-once rule), only the transport differs. A connection *leases* what it
sends; an acknowledgement marks it delivered; a connection that closes gives
its unacknowledged leases back at once (a crashed process's lapse after the
lease), so a reconnecting app is sent them again, with the same event ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import update

from apps.delivery import DeliveryPolicy, claimable, delivery_leases, load_claimed
from apps.dispatch import envelope
from apps.schema import app_deliveries
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import for_update

__all__ = ["StreamDeliveries"]


class StreamDeliveries:
    def __init__(self, db: Database, clock: Clock, policy: DeliveryPolicy) -> None:
        self._db = db
        self._clock = clock
        # A connection's lease; sending an event counts as an attempt.
        self._leases = delivery_leases(policy, count_attempts=True)

    async def claim(self, app_id: int, holder: str, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` due events for the app's active stream subscriptions, leased to ``holder``.

        Returns ``event`` frames ready to send, in outbox order.
        """
        if limit <= 0:
            return []
        now = self._clock.now()
        d = app_deliveries
        q = claimable(self._leases, now, "stream", app_id).limit(limit)
        async with self._db.write() as conn:
            ids = [int(r[0]) for r in await conn.execute(for_update(conn, q, skip_locked=True, of=d))]
            if not ids:
                return []
            await self._leases.lease(conn, ids, holder, now)
            rows = await load_claimed(conn, ids)
        return [
            {
                "type": "event",
                "delivery_id": int(r["id"]),
                "subscription_id": int(r["subscription_id"]),
                "attempt": int(r["attempts"]),
                "event": json.loads(
                    envelope(r["event_id"], r["event_type"], r["event_created_at"], json.loads(r["payload"]))
                ),
            }
            for r in rows
        ]

    async def ack(self, app_id: int, delivery_ids: Sequence[int]) -> int:
        """Mark the app's deliveries delivered (acknowledging twice, or another app's ids, changes nothing)."""
        if not delivery_ids:
            return 0
        d = app_deliveries
        async with self._db.write() as conn:
            res = await conn.execute(
                update(d)
                .where(d.c.id.in_(list(delivery_ids)), d.c.app_id == app_id, d.c.state == "pending")
                .values(state="delivered", delivered_at=self._clock.now(), leased_until=None, leased_by=None)
            )
        return int(res.rowcount)

    async def release(self, holder: str) -> int:
        """A connection closed: what it was sent and not acknowledged goes to the next connection."""
        async with self._db.write() as conn:
            return await self._leases.release(conn, holder)
