"""Stream mode: the same deliveries as webhooks, handed to an app's WebSocket and acknowledged by id.

Why the same delivery rows: an event reaches a stream subscription exactly as
it reaches a webhook one (same dispatch, same per-aggregate order, same
at-least-once rule), only the transport differs. A connection *leases* what it
sends (``apps.claims``); an acknowledgement marks it delivered; a connection
that closes gives its unacknowledged leases back at once (a crashed process's
lapse after the lease), so a reconnecting app is sent them again, with the
same event ids.

Why the same guarantees as webhooks: each send is an attempt, written to the
endpoint's delivery log (``awaiting acknowledgement``, then acknowledged with
its latency, or not acknowledged: the connection closed or the lease ran
out). A delivery sent ``max_attempts`` times and never acknowledged is
dead-lettered, exactly like a webhook that kept failing, so an app that never
acknowledges cannot hold an aggregate's later events forever, and redelivery
through the API sends it again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apps.claims import delivery_leases, drop_uncovered, due, load_claimed
from apps.delivery import DeliveryPolicy
from apps.dispatch import envelope
from apps.schema import app_deliveries, app_delivery_attempts, app_subscriptions
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import for_update

__all__ = ["AWAITING", "StreamDeliveries"]

#: The delivery log's ``error`` of a stream send not yet acknowledged.
AWAITING = "awaiting acknowledgement"
CLOSED = "not acknowledged: the connection closed"


class StreamDeliveries:
    def __init__(self, db: Database, clock: Clock, policy: DeliveryPolicy) -> None:
        self._db = db
        self._clock = clock
        self._policy = policy
        self._leases = delivery_leases(policy.lease, count_attempts=True)
        #: Stream deliveries this process dead-lettered (a metric and a test hook).
        self.dead_lettered = 0

    @property
    def lapsed(self) -> str:
        return f"not acknowledged within {self._policy.lease:g} s"

    async def claim(self, app_id: int, holder: str, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` due events for the app's active stream subscriptions, leased to ``holder``.

        Each is one attempt, logged as awaiting acknowledgement. A delivery
        already sent ``max_attempts`` times is not sent again (``dead_letter_due``,
        a periodic job, dead-letters it once its last lease runs out).
        Returns ``event`` frames ready to send, in outbox order.
        """
        if limit <= 0:
            return []
        now = self._clock.now()
        d, a = app_deliveries, app_delivery_attempts
        async with self._db.write() as conn:
            # a delivery whose last attempt ran out is left out here and dead-lettered by dead_letter_due
            got = await self._leases.claim_due(
                conn, holder, now, where=[*due(now, "stream", app_id), d.c.attempts < self._policy.max_attempts],
                order_by=[d.c.outbox_id], limit=limit, returning=[d.c.id, d.c.subscription_id, d.c.attempts],
            )  # fmt: skip
            if not got:
                return []
            ids = [int(r["id"]) for r in got]
            # an earlier send of these (same or another connection) was never acknowledged in time
            await conn.execute(
                update(a).where(a.c.delivery_id.in_(ids), a.c.error == AWAITING).values(error=self.lapsed)
            )
            rows = await drop_uncovered(conn, await load_claimed(conn, ids), now, counted=True)
            if not rows:
                return []
            await conn.execute(
                insert(a),
                [
                    {
                        "delivery_id": r["id"],
                        "subscription_id": r["subscription_id"],
                        "attempt": r["attempts"],
                        "at": now,
                        "status": None,
                        "latency_ms": 0,
                        "error": AWAITING,
                    }  # fmt: skip
                    for r in rows
                ],
            )
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
        """Mark the app's deliveries delivered (acknowledging twice, or another app's ids, changes nothing).

        Only what a stream sent counts: a webhook delivery of the same app, or a stream delivery never sent
        (its subscription disabled, or not yet claimed), is not the stream's to acknowledge. Marking one
        delivered would lose it: nobody received it, and it would never be sent.
        """
        if not delivery_ids:
            return 0
        d, a, s = app_deliveries, app_delivery_attempts, app_subscriptions
        now = self._clock.now()
        streams = select(s.c.id).where(s.c.app_id == app_id, s.c.mode == "stream")
        async with self._db.write() as conn:
            acked = [
                int(r[0])
                for r in await conn.execute(
                    update(d)
                    .where(
                        d.c.id.in_(list(delivery_ids)),
                        d.c.app_id == app_id,
                        d.c.state == "pending",
                        d.c.attempts > 0,
                        d.c.subscription_id.in_(streams),
                    )
                    .values(state="delivered", delivered_at=now, leased_until=None, leased_by=None)
                    .returning(d.c.id)
                )
            ]
            if acked:
                sent = await conn.execute(
                    select(a.c.id, a.c.at).where(a.c.delivery_id.in_(acked), a.c.error == AWAITING)
                )
                done = [{"aid": int(i), "ms": max(0, int((now - at).total_seconds() * 1000))} for i, at in sent]
                if done:
                    await conn.execute(
                        update(a)
                        .where(a.c.id == bindparam("aid"))
                        .values(error=None, latency_ms=bindparam("ms"), response_excerpt="acknowledged"),
                        done,
                    )
        return len(acked)

    async def release(self, holder: str) -> int:
        """A connection closed: what it was sent and not acknowledged goes to the next connection.

        A delivery that has had its last attempt is dead-lettered here rather than sent again.
        """
        d, a = app_deliveries, app_delivery_attempts
        async with self._db.write() as conn:
            ids = [
                int(r[0])
                for r in await conn.execute(select(d.c.id).where(d.c.leased_by == holder, d.c.state == "pending"))
            ]
            if not ids:
                return 0
            await conn.execute(update(a).where(a.c.delivery_id.in_(ids), a.c.error == AWAITING).values(error=CLOSED))
            spent = d.c.attempts >= self._policy.max_attempts
            res = await conn.execute(
                update(d)
                .where(d.c.id.in_(ids), d.c.leased_by == holder, spent)
                .values(state="dead", leased_until=None, leased_by=None)
            )
            self.dead_lettered += int(res.rowcount)
            await self._leases.finish(conn, holder, ids, {"leased_until": None, "leased_by": None}, fenced=False)
        return len(ids)

    async def dead_letter_due(self) -> int:
        """Dead-letter every stream delivery whose last attempt's lease ran out unacknowledged (a periodic job,
        every ``background_interval``; not part of each claim, which runs far more often)."""
        async with self._db.write() as conn:
            return await self._dead_letter(conn, self._clock.now(), None)

    async def _dead_letter(self, conn: AsyncConnection, now: datetime, app_id: int | None) -> int:
        d, a, s = app_deliveries, app_delivery_attempts, app_subscriptions
        q = select(d.c.id).where(
            d.c.state == "pending",
            d.c.attempts >= self._policy.max_attempts,
            self._leases.free(now),
            d.c.subscription_id.in_(select(s.c.id).where(s.c.mode == "stream")),
        )
        if app_id is not None:
            q = q.where(d.c.app_id == app_id)
        ids = [int(r[0]) for r in await conn.execute(for_update(conn, q, skip_locked=True))]
        if not ids:
            return 0
        await conn.execute(update(a).where(a.c.delivery_id.in_(ids), a.c.error == AWAITING).values(error=self.lapsed))
        await conn.execute(update(d).where(d.c.id.in_(ids)).values(state="dead", leased_until=None, leased_by=None))
        self.dead_lettered += len(ids)
        return len(ids)
