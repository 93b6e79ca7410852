"""Webhook delivery workers: claim due deliveries, sign, post, record, retry or dead-letter.

Why claims in the database: several server processes run workers; a lease
(``apps.claims`` over ``messaging.leases``: ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, the single writer on SQLite) means one process posts one attempt.
A process killed mid-request leaves its lease to lapse; the next claimer
sends the same event again with the same ``webhook-id`` (the event's id), so
receivers deduplicate. The outcome is written fenced by the lease, so a
worker that stalled past its lease changes nothing. Which deliveries are due
(and the per-aggregate order) is ``apps.claims.due``, shared with streams.

Why bounds: at most ``per_endpoint`` attempts per subscription and
``concurrency`` in all are in flight in a process, each bounded by a timeout,
so a slow or dead app delays only its own deliveries (and never chat or
notice delivery, which share nothing with this but the database).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from standardwebhooks.webhooks import Webhook

from apps.claims import delivery_leases, drop_uncovered, load_claimed, webhook_candidates
from apps.dispatch import envelope
from apps.outcomes import Attempted, OutcomeRecorder
from apps.schema import app_deliveries
from apps.subscriptions import Subscription
from kernel.clock import Clock
from kernel.db.database import Database
from kernel.db.dialect import for_update
from kernel.errors import ZzdError
from kernel.waiting import wait_event
from messaging.leases import run_token

logger = logging.getLogger(__name__)

__all__ = ["GATHER", "DeliveryPolicy", "DeliveryWorker", "Outcome", "Sender", "sign"]

_rng = secrets.SystemRandom()
#: Seconds a woken worker or stream connection waits for more wake-ups before it claims (one claim for all).
GATHER = 0.02
#: Retries due within one slot of this many seconds share one wake-up (``DeliveryWorker._wake_in``).
_WAKE_SLOT = 0.05


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one HTTP attempt got: a status (None when no answer), an excerpt, or an error."""

    status: int | None
    excerpt: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Sender(Protocol):
    """Posts one signed body (the shell implements it with aiohttp, no redirects, a capped answer)."""

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 12
    backoff_base: float = 5.0
    backoff_cap: float = 3600.0
    timeout: float = 10.0
    disable_after: int = 50
    concurrency: int = 32
    per_endpoint: int = 4
    lease: float = 60.0
    poll: float = 0.5

    def backoff(self, attempts: int) -> timedelta:
        """Wait before attempt ``attempts + 1``: base·2^(attempts−1), capped, ±20 % jitter."""
        raw = min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1))
        return timedelta(seconds=raw * _rng.uniform(0.8, 1.2))


def sign(secrets_: list[str], msg_id: str, at: datetime, body: str) -> str:
    """``webhook-signature``: one ``v1,<base64>`` per secret, space-separated (Standard Webhooks 1.0)."""
    return " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets_)


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        sender: Sender,
        check_url: Callable[[str], Awaitable[None]],
        *,
        node_id: str,
        policy: DeliveryPolicy,
        on_disabled: Callable[[Subscription, str], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._sender = sender
        self._check_url = check_url
        self._token = run_token(node_id)
        self._leases = delivery_leases(policy.lease)
        self.policy = policy
        self._outcomes = OutcomeRecorder(
            db, clock, self._leases, self._token, lambda: self.policy, on_disabled, on_retry=self._wake_in
        )
        self._inflight: Counter[int] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._freed: set[asyncio.Task[Any]] = set()  # attempts whose slot was already given back
        self._wake = asyncio.Event()
        self._timers: dict[int, asyncio.TimerHandle] = {}  # wake-ups for retries falling due, by slot
        self._loop: asyncio.Task[None] | None = None
        #: Attempts made by this process (a metric and a test hook).
        self.attempted = 0

    # ------------------------------------------------------------ running
    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="webhook-delivery")

    def _wake_in(self, seconds: float) -> None:
        """A failed delivery is due again in ``seconds``: claim then, not at the next poll.

        One timer per 50 ms slot: many retries falling due together (an endpoint down under load) share
        one wake-up, and the timers pending are bounded by the slots of the longest wait, not the retries.
        """
        loop = asyncio.get_running_loop()
        slot = int((loop.time() + max(0.0, seconds)) / _WAKE_SLOT) + 1
        if slot in self._timers:
            return

        def fire() -> None:
            self._timers.pop(slot, None)
            self._wake.set()

        self._timers[slot] = loop.call_at(slot * _WAKE_SLOT, fire)

    def kick(self) -> None:
        """New deliveries were recorded: look now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await wait_event(self._wake, self.policy.poll)
            # Gather: attempts finishing together (and the dispatcher's kick) make one claim, not one each;
            # a claim is a write transaction, and at a few hundred attempts a second claiming per
            # finished attempt cost more than the attempts.
            await asyncio.sleep(GATHER)
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                logger.exception("webhook delivery round failed; retrying at the next poll")

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait for the attempts in flight (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------ claiming
    async def run_once(self) -> int:
        """Claim what is due within the bounds and start the attempts; returns how many started."""
        room = self.policy.concurrency - sum(self._inflight.values())
        if room <= 0:
            return 0
        claimed = await self._claim(room)
        for row in claimed:
            self._inflight[int(row["subscription_id"])] += 1
            task = asyncio.create_task(self._attempt(row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(self._freed.discard)
        return len(claimed)

    async def _claim(self, room: int) -> list[dict[str, Any]]:
        """Pick due deliveries within the per-endpoint bound, then lease them (``messaging.leases``)."""
        now = self._clock.now()
        full = [sid for sid, n in self._inflight.items() if n >= self.policy.per_endpoint]
        q = webhook_candidates(now, self._leases, room * 4, full)
        async with self._db.write() as conn:
            picked: list[int] = []
            per_sub: Counter[int] = Counter()
            for did, sid in await conn.execute(for_update(conn, q, skip_locked=True, of=app_deliveries)):
                if len(picked) >= room or self._inflight[int(sid)] + per_sub[int(sid)] >= self.policy.per_endpoint:
                    continue
                per_sub[int(sid)] += 1
                picked.append(int(did))
            if not picked:
                return []
            await self._leases.lease(conn, picked, self._token, now)
            return await drop_uncovered(conn, await load_claimed(conn, picked), now, counted=False)

    # ------------------------------------------------------------ attempting
    async def _attempt(self, row: dict[str, Any]) -> None:
        sub: Subscription = row["sub"]
        try:
            body = envelope(row["event_id"], row["event_type"], row["event_created_at"], json.loads(row["payload"]))
            now = self._clock.now()
            headers = {
                "webhook-id": row["event_id"],
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": sign(sub.signing_secrets(now), row["event_id"], now, body),
                "content-type": "application/json",
                "user-agent": "ZZD-Webhooks/1.0",
            }
            started = time.monotonic()
            try:
                assert sub.url is not None
                await self._check_url(sub.url)
                async with asyncio.timeout(self.policy.timeout):
                    outcome = await self._sender.post(sub.url, headers, body.encode())
            except ZzdError as exc:
                outcome = Outcome(None, error=f"{exc.code}: {exc.message}"[:200])
            except TimeoutError:
                outcome = Outcome(None, error=f"no answer within {self.policy.timeout:g} s")
            latency = int((time.monotonic() - started) * 1000)
            self.attempted += 1
            attempt = int(row["attempts"]) + 1
            # The request is over: its slot goes to the next one while the outcome is written (the
            # delivery stays leased to us until then, so nobody claims it meanwhile).
            self._free_slot(sub.id)
            await self._outcomes.record(Attempted(int(row["id"]), sub, attempt, self._clock.now(), outcome, latency))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("webhook attempt for delivery %s failed unexpectedly; its lease will lapse", row["id"])
        finally:
            self._free_slot(sub.id)

    def _free_slot(self, sub_id: int) -> None:
        """Count one request to ``sub_id`` as finished (once per attempt: a second call does nothing)."""
        task = asyncio.current_task()
        if task is None or task in self._freed:
            return
        self._freed.add(task)
        self._inflight[sub_id] -= 1
        if self._inflight[sub_id] <= 0:
            del self._inflight[sub_id]
        self._wake.set()
