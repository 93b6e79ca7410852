"""The composition root: every long-lived object, built once per server process.

Built in the Starlette lifespan (or by the CLI) from ``Settings``; services
get what they need through their constructors. Nothing here is global, so
tests can run two servers in one process.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from messaging.broker import Broker, create_broker
from messaging.broker.memory import MemoryBroker
from messaging.chat import ChatService
from messaging.events import EventLog
from messaging.publisher import EVENTS_CHANNEL, WakeupPublisher
from messaging.wakeup import EventGroup
from org_tree.clock import Clock, SystemClock
from org_tree.db.database import Database
from org_tree.people import PersonDirectory
from org_tree.sessions import SessionStore
from zzd.auth.passwords import Passwords
from zzd.auth.tokens import TokenService
from zzd.config import Settings
from zzd.gateway.hub import CONTROL_CHANNEL, ConnectionHub
from zzd.gateway.ratelimit import RateLimiter
from zzd.metrics import Metrics

logger = logging.getLogger(__name__)

__all__ = ["Services"]


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    broker: Broker
    publisher: WakeupPublisher
    persons: PersonDirectory
    sessions: SessionStore
    events: EventLog
    chat: ChatService
    tokens: TokenService
    passwords: Passwords
    hub: ConnectionHub
    rate_limiter: RateLimiter
    metrics: Metrics
    started: bool = field(default=False)

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock | None = None, passwords: Passwords | None = None) -> Services:
        clock = clock or SystemClock()
        db = Database(settings.database_url, pool_size=settings.db_pool_size)
        broker = create_broker(settings.broker_url, prefix=settings.redis_prefix)
        publisher = WakeupPublisher(broker, settings.node_id)
        events = EventLog(db)
        sessions = SessionStore(db, clock, refresh_ttl=timedelta(seconds=settings.refresh_token_ttl))
        hub = ConnectionHub(settings.node_id, events, sessions, max_per_person=settings.max_connections_per_person)
        single_process = isinstance(broker, MemoryBroker)

        def notify(groups: list[EventGroup]) -> None:
            hub.deliver(groups)
            if not single_process:
                publisher.publish_soon(groups)

        return cls(
            settings=settings,
            clock=clock,
            db=db,
            broker=broker,
            publisher=publisher,
            persons=PersonDirectory(db, clock),
            sessions=sessions,
            events=events,
            chat=ChatService(db, events, clock, notify),
            tokens=TokenService(
                settings.signing_keys(),
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                ttl=timedelta(seconds=settings.access_token_ttl),
                leeway=settings.jwt_leeway,
                clock=clock,
            ),
            passwords=passwords or Passwords(),
            hub=hub,
            rate_limiter=RateLimiter(settings.send_rate_per_minute),
            metrics=Metrics(),
        )

    async def start(self) -> None:
        """Connect to the broker and start background work (after the schema is migrated)."""
        if self.db.is_sqlite:
            pragmas = await self.db.pragmas()
            if str(pragmas["journal_mode"]).lower() != "wal" or int(pragmas["synchronous"]) != 2:
                raise RuntimeError(f"SQLite durability settings not in force: {pragmas}")
        self.broker.subscribe(EVENTS_CHANNEL, self.hub.on_wakeup)
        self.broker.subscribe(CONTROL_CHANNEL, self.hub.on_control)
        self.broker.on_reconnect(self.hub.backfill)
        await self.broker.start()
        self.publisher.start()
        self.hub.start_safety_poll(self.settings.safety_poll_interval)
        m, pub = self.metrics, self.publisher
        m.gauge_fn("zzd_wakeups_published", "Wake-ups published to the broker", lambda: pub.published)
        m.gauge_fn("zzd_wakeups_failed", "Wake-up publishes that failed (repaired by sync)", lambda: pub.failed)
        m.gauge_fn("zzd_wakeups_dropped", "Wake-ups dropped on queue overflow", lambda: pub.dropped)
        m.gauge_fn(
            "zzd_broker_reconnects", "Broker subscriber reconnects", lambda: getattr(self.broker, "reconnects", 0)
        )
        self.started = True

    async def announce(self, message: dict[str, object]) -> None:
        """Tell every process (including this one) about a control change."""
        data = json.dumps(message).encode()
        self.hub.on_control(data)
        try:
            await self.broker.publish(CONTROL_CHANNEL, data)
        except Exception as exc:
            logger.warning("control announcement not published: %r", exc)

    async def stop(self) -> None:
        await self.chat.close()
        await self.hub.stop()
        await self.publisher.close()
        await self.broker.close()
        await self.db.dispose()
