"""The composition root: every long-lived object, built once per server process.

Built in the Starlette lifespan (or by the CLI) from ``Settings``; services
get what they need through their constructors. Nothing here is global, so
tests can run two servers in one process.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from apps.addresses import AddressPolicy
from apps.alarm import EndpointAlarm
from apps.bot import BotService
from apps.delivery import DeliveryPolicy, DeliveryWorker
from apps.dispatch import Dispatcher, prune_published
from apps.idempotency import IdempotencyStore
from apps.ratelimit import AppRateLimiter
from apps.registry import AppRegistry
from apps.stream import StreamDeliveries
from apps.subscriptions import SubscriptionService
from kernel.audit import SEAL_GAP, Sealer, check_key
from kernel.audit import prune as prune_audit
from kernel.clock import Clock, SystemClock
from kernel.db.base import metadata
from kernel.db.database import Database
from kernel.db.dialect import analyze_grown
from kernel.jobs import Jobs
from kernel.sessions import SessionStore
from messaging.attachments.links import AttachmentLinks
from messaging.attachments.service import AttachmentService
from messaging.attachments.store import LocalDiskStore
from messaging.broker import Broker, create_broker
from messaging.broker.memory import MemoryBroker
from messaging.chat import ChatService
from messaging.chat_storage import PG_KEY_LOOKUPS
from messaging.conversations.fanout import GroupFanout, GroupRelay
from messaging.conversations.groups import GroupService
from messaging.conversations.members import MemberReconciler
from messaging.conversations.model import ConversationConfig
from messaging.conversations.org_impact import conversation_impact
from messaging.conversations.photos import MESSAGE_REF, can_see_message
from messaging.conversations.service import ConversationService
from messaging.events import EventLog
from messaging.notices.coordinator import NoticeFanout
from messaging.notices.delivery import DeliveryRecorder
from messaging.notices.ding import DingScheduler
from messaging.notices.model import DingPolicy, NoticeConfig
from messaging.notices.notifier import LoggingNotifier, Notifier
from messaging.notices.relay import FanoutRelay
from messaging.notices.service import NOTICE_REF, NoticeService
from messaging.ports import CONTROL_CHANNEL
from messaging.publisher import EVENTS_CHANNEL, WakeupPublisher
from messaging.retention import Retention
from messaging.seats import SeatNotifier
from messaging.tasks.org_follow import TaskOrgFollower
from messaging.tasks.reports import ReportService
from messaging.tasks.service import TaskService
from messaging.tasks.timers import TaskTimers
from messaging.unit_of_work import UnitOfWork
from messaging.wakeup import EventGroup
from org_tree.grant_service import GrantService
from org_tree.holder import OrgIndexHolder
from org_tree.org_service import OrgService
from org_tree.people import PersonDirectory
from org_tree.structure import OrgHooks
from zzd.auth.passwords import Passwords
from zzd.auth.throttle import LoginThrottle
from zzd.auth.tokens import TokenService
from zzd.config import Settings
from zzd.delivery_process import DeliveryBell
from zzd.gateway.app_stream import StreamHub
from zzd.gateway.hello_checks import HelloChecks
from zzd.gateway.hub import ConnectionHub
from zzd.gateway.ratelimit import RateLimiter
from zzd.gateway.slots import RedisSlots
from zzd.metrics import Metrics
from zzd.org_wake import OrgWake
from zzd.webhook_http import AiohttpSender

logger = logging.getLogger(__name__)

__all__ = ["Services"]


def _notifier(settings: Settings) -> Notifier:
    if settings.notifier_url is None:
        return LoggingNotifier()
    if settings.notifier_secret is None:
        raise ValueError("ZZD_NOTIFIER_SECRET is required with ZZD_NOTIFIER_URL")
    from zzd.notifier_http import HttpNotifier

    return HttpNotifier(settings.notifier_url, settings.notifier_secret.get_secret_value().encode())


def _both(a: Callable[[], None], b: Callable[[], None]) -> Callable[[], None]:
    def call() -> None:
        a()
        b()

    return call


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
    throttle: LoginThrottle
    hub: ConnectionHub
    rate_limiter: RateLimiter
    metrics: Metrics
    org_index: OrgIndexHolder
    org: OrgService
    grants: GrantService
    notices: NoticeService
    #: "Delivered" receipts for notice events written to open sockets (messaging/notices/delivery.py).
    delivered: DeliveryRecorder
    ding: DingScheduler
    notifier: Notifier
    attachments: AttachmentService
    upload_limiter: RateLimiter
    conversations: ConversationService
    groups: GroupService
    members: MemberReconciler
    tasks: TaskService
    reports: ReportService
    task_timers: TaskTimers
    jobs: Jobs
    apps: AppRegistry
    app_rate: AppRateLimiter
    idempotency: IdempotencyStore
    bot: BotService
    subscriptions: SubscriptionService
    dispatcher: Dispatcher
    delivery: DeliveryWorker
    webhook_sender: AiohttpSender
    stream: StreamDeliveries
    stream_hub: StreamHub
    #: Set after a commit that wrote outbox rows: the dispatcher runs now, not at its next poll.
    outbox_bell: asyncio.Event
    #: The session and stream reads of hellos arriving together, one statement each.
    hellos: HelloChecks
    retention: Retention
    #: Direct chat's own connections (``ZZD_DB_CHAT_POOL_SIZE``; ``db`` itself on SQLite or when 0).
    chat_db: Database | None = field(default=None)
    started: bool = field(default=False)
    #: Org commits wake the other processes' index (zzd/org_wake.py); made in ``start``.
    org_wake: OrgWake | None = field(default=None)
    #: Chains the audit entries this and other processes committed; made in ``start``.
    sealer: Sealer | None = field(default=None)
    #: The audit key, read (or made) once in ``start`` and checked against the chain's; sealing and
    #: retention both use it, so a key file changed or removed later cannot split them.
    audit_key: bytes | None = field(default=None)

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock | None = None, passwords: Passwords | None = None) -> Services:
        clock = clock or SystemClock()
        db = Database(settings.database_url, pool_size=settings.db_pool_size)
        broker = create_broker(settings.broker_url, prefix=settings.redis_prefix)
        publisher = WakeupPublisher(broker, settings.node_id)
        events = EventLog(db)
        sessions = SessionStore(db, clock, refresh_ttl=timedelta(seconds=settings.refresh_token_ttl))
        jobs = Jobs()
        single_process = isinstance(broker, MemoryBroker)
        cap = settings.max_connections_per_person
        hub = ConnectionHub(
            settings.node_id,
            events,
            sessions,
            max_per_person=cap,
            slots=None if single_process else RedisSlots(settings.broker_url, prefix=settings.redis_prefix, cap=cap),
            publish_control=lambda data: broker.publish(CONTROL_CHANNEL, data),
        )

        def notify(groups: list[EventGroup]) -> None:
            hub.deliver(groups)
            if not single_process:
                publisher.publish_soon(groups)

        # Every messaging write is a unit of work of this one: commit, then wake (notify);
        # a commit that wrote outbox rows rings the apps dispatcher's bell (no poll to wait for).
        outbox_bell = asyncio.Event()
        uow = UnitOfWork(db, events, clock, notify, on_outbox=outbox_bell.set)
        # Direct chat writes through connections of its own (ZZD_DB_CHAT_POOL_SIZE), so it never queues for
        # the shared pool behind report filings and app deliveries, and plans its key lookups as index probes
        # whatever the tables' statistics say (PG_KEY_LOOKUPS); SQLite has one writer whatever we do.
        chat_db = db
        if not db.is_sqlite and settings.db_chat_pool_size:
            chat_db = Database(
                settings.database_url, pool_size=settings.db_chat_pool_size, server_settings=PG_KEY_LOOKUPS
            )
        chat_uow = uow if chat_db is db else UnitOfWork(chat_db, events, clock, notify, on_outbox=outbox_bell.set)

        holder = OrgIndexHolder(db)
        # Writers link uploads through this store; the upload service, built after them, gets their checks.
        links = AttachmentLinks()
        notifier = _notifier(settings)
        relay = FanoutRelay(
            uow,
            lambda: holder.index,
            node_id=settings.node_id,
            lease=timedelta(seconds=settings.notice_fanout_lease),
            chunk=settings.notice_fanout_chunk,
            inline_receipts=settings.notice_inline_receipts,
        )
        notice_config = NoticeConfig(
            recall_window=timedelta(seconds=settings.notice_recall_window),
            ding=DingPolicy(
                steps=(
                    (timedelta(seconds=settings.ding_remind_after), "remind"),
                    (timedelta(seconds=settings.ding_escalate_after), "escalate"),
                )
            ),
        )
        # Large groups' events are written after the send: connected members first (fanout.py).
        group_relay = GroupRelay(
            uow,
            node_id=settings.node_id,
            lease=timedelta(seconds=settings.notice_fanout_lease),
            chunk=settings.notice_fanout_chunk,
        )
        conversations = ConversationService(
            uow,
            ConversationConfig(
                max_group_size=settings.group_max_members,
                read_list_max=settings.read_list_max,
                edit_window=timedelta(seconds=settings.message_edit_window),
                recall_window=timedelta(seconds=settings.message_recall_window),
            ),
            photos=links,
            fanout=GroupFanout(
                group_relay, hub, broker, jobs, node_id=settings.node_id, sweep_after=settings.group_fanout_sweep_after
            ),
        )
        metrics = Metrics()
        tasks = TaskService(uow, lambda: holder.index, linker=links, observe=metrics.observe_task)
        task_timers = TaskTimers(
            uow,
            notifier,
            lambda: holder.index,
            node_id=settings.node_id,
            lease=timedelta(seconds=settings.task_timer_lease),
            batch=settings.task_timer_batch,
            pause=settings.task_timer_pause,
        )
        persons = PersonDirectory(db, clock)
        notices = NoticeService(
            uow,
            lambda: holder.index,
            notifier,
            NoticeFanout(relay, hub, broker, jobs, node_id=settings.node_id),
            config=notice_config,
            photos=links,
        )
        reports = ReportService(tasks)
        attachments = AttachmentService(
            db,
            LocalDiskStore(settings.upload_path()),
            clock,
            visibility={
                "report": reports.can_see,
                "task_event": tasks.can_see_task_event,
                MESSAGE_REF: partial(can_see_message, db),
                NOTICE_REF: notices.can_see,
            },
            max_bytes=settings.upload_max_bytes,
            idle_timeout=settings.upload_idle_timeout,
        )
        # Open tasks and conversations follow a structural org edit, in the edit's transaction; whoever's
        # seats change (assignment, handover, retirement), or whose positions' unit was renamed, moved or merged,
        # gets positions.changed in it.
        follower = TaskOrgFollower(tasks)
        seats = SeatNotifier(uow, lambda: holder.index)
        org = OrgService(
            db,
            clock,
            holder,
            hooks=OrgHooks(
                retired=(follower.positions_retired,),
                moved=(follower.positions_moved,),
                impact=(lambda conn, pids, _units: follower.impact(conn, pids), conversation_impact),
                holders=(seats.holders_changed,),
                handed=(notices.handed_over,),
                units=(seats.units_changed,),
            ),
        )
        addresses = AddressPolicy(settings.webhook_allowed_networks, allow_public=settings.webhook_allow_public)
        policy = DeliveryPolicy(
            max_attempts=settings.webhook_max_attempts,
            backoff_base=settings.webhook_backoff_base,
            backoff_cap=settings.webhook_backoff_cap,
            timeout=settings.webhook_timeout,
            disable_after=settings.webhook_disable_after,
            concurrency=settings.delivery_concurrency,
            per_endpoint=settings.delivery_per_endpoint,
            lease=settings.delivery_lease,
            poll=settings.delivery_poll_interval,
        )
        stream_hub = StreamHub()
        sender = AiohttpSender(settings.webhook_timeout, settings.delivery_concurrency, addresses)
        delivery = DeliveryWorker(
            db,
            clock,
            sender,
            addresses.check,
            node_id=settings.node_id,
            policy=policy,
            on_disabled=EndpointAlarm(db, clock, conversations),
        )
        return cls(
            settings=settings,
            clock=clock,
            db=db,
            broker=broker,
            publisher=publisher,
            persons=persons,
            sessions=sessions,
            events=events,
            chat=ChatService(chat_uow),
            chat_db=chat_db,
            tokens=TokenService(
                settings.signing_keys(),
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                ttl=timedelta(seconds=settings.access_token_ttl),
                leeway=settings.jwt_leeway,
                clock=clock,
            ),
            passwords=passwords
            or Passwords(concurrency=settings.password_hash_concurrency, max_waiting=settings.password_hash_queue),
            throttle=LoginThrottle(
                per_login=settings.login_limit_per_login,
                per_address=settings.login_failures_per_address,
                redis_url=None if single_process else settings.broker_url,
                prefix=settings.redis_prefix,
            ),
            hub=hub,
            rate_limiter=RateLimiter(settings.send_rate_per_minute, abuse_after=settings.send_abuse_after),
            metrics=metrics,
            org_index=holder,
            org=org,
            grants=GrantService(db, clock, holder, org),
            notices=notices,
            delivered=DeliveryRecorder(notices.mark_delivered_many),
            ding=DingScheduler(uow, notifier, lambda: holder.index, node_id=settings.node_id),
            notifier=notifier,
            attachments=attachments,
            upload_limiter=RateLimiter(settings.upload_rate_per_minute),
            tasks=tasks,
            reports=reports,
            task_timers=task_timers,
            conversations=conversations,
            groups=GroupService(conversations),
            members=MemberReconciler(conversations, lambda: holder.index),
            jobs=jobs,
            apps=AppRegistry(db, clock, org, persons, lambda: holder.index),
            app_rate=AppRateLimiter(
                redis_url=None if single_process else settings.broker_url, prefix=settings.redis_prefix
            ),
            idempotency=IdempotencyStore(db, clock),
            bot=BotService(notices, tasks, reports, conversations, org, lambda: holder.index),
            subscriptions=SubscriptionService(
                db, clock, lambda: holder.index, addresses.check, max_active=settings.app_max_subscriptions
            ),
            dispatcher=Dispatcher(
                db,
                clock,
                lambda: holder.index,
                # new deliveries: this process's worker, or the delivery processes' (zzd/delivery_process.py)
                on_new=_both(
                    delivery.kick if settings.delivery_in_server else DeliveryBell(broker).ring, stream_hub.kick
                ),
            ),
            delivery=delivery,
            webhook_sender=sender,
            stream=StreamDeliveries(db, clock, policy),
            stream_hub=stream_hub,
            outbox_bell=outbox_bell,
            hellos=HelloChecks(db, clock, sessions, events),
            retention=retention(db, clock, settings),
        )

    async def start(self) -> None:
        """Connect to the broker and start background work (after the schema is migrated)."""
        if self.db.is_sqlite:
            pragmas = await self.db.pragmas()
            if str(pragmas["journal_mode"]).lower() != "wal" or int(pragmas["synchronous"]) != 2:
                raise RuntimeError(f"SQLite durability settings not in force: {pragmas}")
        # The audit key is kept outside the database; a process whose key is not the chain's does not start
        # (checked before anything runs: its sealer would seal nothing, and a stopped start leaves nothing behind).
        key = self.audit_key = self.settings.audit_secret()
        await check_key(self.db, key)
        await self.org_index.load()
        self.org.directory.wait = self.settings.directory_wait
        if self.settings.directory_warm:  # built off the loop while the server starts serving
            self.org.directory.warm()
        self.broker.subscribe(EVENTS_CHANNEL, self.hub.on_wakeup)
        self.broker.subscribe(CONTROL_CHANNEL, self.hub.on_control)
        self.broker.subscribe(CONTROL_CHANNEL, self.stream_hub.on_control)
        self.broker.subscribe(CONTROL_CHANNEL, self.notices.fanout.on_control)
        group_fanout = self.conversations.fanout
        if group_fanout is not None:
            self.broker.subscribe(CONTROL_CHANNEL, group_fanout.on_control)
            self.jobs.every(self.settings.background_interval, group_fanout.run_pending, "message-fanout")
        self.broker.on_reconnect(self.hub.backfill)
        self.org_wake = OrgWake(self.broker, self.org_index)
        await self.broker.start()
        self.publisher.start()
        self.hub.start_safety_poll(self.settings.safety_poll_interval)
        self.jobs.every(self.settings.index_refresh_interval, self.org_index.refresh_if_changed, "org-index-refresh")
        self.jobs.every(self.settings.background_interval, self.notices.flush_progress, "notice-progress")
        self.jobs.every(self.settings.background_interval, self.ding.run_due, "ding")
        self.jobs.every(self.settings.background_interval, self.notices.fanout.run_pending, "notice-fanout")
        await self.tasks.seed_categories()
        self.jobs.every(self.settings.background_interval, self._run_task_timers, "task-timers")
        # Unit groups and position members follow the org tree once this process's index has the change.
        self.jobs.every(self.settings.index_refresh_interval, self.members.run, "conversation-members")
        self.jobs.every(600.0, self.attachments.sweep_incoming, "upload-sweep")
        self.jobs.every(3600.0, self._prune_audit, "audit-prune")
        if not self.db.is_sqlite:  # SQLite plans without such statistics: no writer turn every interval
            # Plans kept by prepared statements follow the tables' growth (kernel/db/dialect.py).
            self.jobs.every(self.settings.statistics_interval, self._refresh_statistics, "statistics")
        # Audited writes only insert their entry; this chains them after each commit (kernel/audit.py).
        self.sealer = Sealer(self.db, key)
        self.jobs.every(self.sealer.poll, self.sealer.run_once, "audit-seal", wake=self.sealer.bell, wake_gap=SEAL_GAP)
        self.jobs.every(self.settings.retention_interval, self.retention.run, "retention")
        # The open platform: outbox events become deliveries; webhooks go out from every process.
        poll = self.settings.delivery_poll_interval
        # Woken after each commit that wrote outbox rows, but one pass per gap reads them all.
        gap = self.settings.dispatch_wake_gap
        self.jobs.every(poll, self.dispatcher.run_once, "app-dispatch", wake=self.outbox_bell, wake_gap=gap)
        self.jobs.every(self.settings.background_interval, self.stream.dead_letter_due, "stream-dead-letter")
        if self.settings.delivery_in_server:
            self.delivery.start()
        m, pub = self.metrics, self.publisher
        m.counter_fn("zzd_wakeups_published", "Wake-ups published to the broker", lambda: pub.published)
        m.counter_fn("zzd_wakeups_failed", "Wake-up publishes that failed (repaired by sync)", lambda: pub.failed)
        m.counter_fn("zzd_wakeups_dropped", "Wake-ups dropped on queue overflow", lambda: pub.dropped)
        m.counter_fn(
            "zzd_broker_reconnects", "Broker subscriber reconnects", lambda: getattr(self.broker, "reconnects", 0)
        )
        m.gauge_fn(
            "zzd_org_index_version", "Org version this process routes with", lambda: self.org_index.index.version
        )
        m.gauge_fn(
            "zzd_gc_frozen_objects",
            "Start-up objects moved out of the cyclic collector (zzd.server.freeze_start_up_heap)",
            gc.get_freeze_count,
        )
        self.started = True

    async def _prune_audit(self) -> None:
        """Retention: entries older than ``audit_retention_days`` go, the chain's anchor moves with them."""
        assert self.audit_key is not None, "scheduled by start(), which reads the key first"
        now = self.clock.now()
        await prune_audit(self.db, self.audit_key, now - timedelta(days=self.settings.audit_retention_days), now)

    async def _refresh_statistics(self) -> None:
        """``ANALYZE`` the project's table that grew most since its last analyze, if enough (PostgreSQL)."""
        async with self.db.write() as conn:
            grown = await analyze_grown(conn, metadata.tables.keys())
        if grown:
            logger.info("statistics refreshed: %s", ", ".join(grown))

    async def _run_task_timers(self) -> None:
        for outcome in await self.task_timers.run_due():
            self.metrics.task_timers.labels(kind=outcome.kind, status=outcome.status).inc()

    async def announce(self, message: dict[str, object]) -> None:
        """Tell every process (including this one) about a control change."""
        data = json.dumps(message).encode()
        self.hub.on_control(data)
        try:
            await self.broker.publish(CONTROL_CHANNEL, data)
        except Exception as exc:
            logger.warning("control announcement not published: %r", exc)

    async def stop(self) -> None:
        await self.jobs.stop()
        await self.org.directory.close()
        if self.sealer is not None:  # what this process committed last is chained before it goes
            await self.sealer.flush()
        if self.org_wake is not None:
            await self.org_wake.close()
        await self.delivery.close()
        await self.webhook_sender.close()
        await self.chat.close()
        await self.hellos.close()
        await self.delivered.close()
        await self.notices.close()
        await self.attachments.close()
        close = getattr(self.notifier, "close", None)
        if close is not None:
            await close()
        await self.hub.stop()
        await self.throttle.close()
        await self.app_rate.close()
        await self.publisher.close()
        await self.broker.close()
        await self.db.dispose()
        if self.chat_db is not None and self.chat_db is not self.db:
            await self.chat_db.dispose()


def retention(db: Database, clock: Clock, settings: Settings) -> Retention:
    """The retention pass under the ``*_retention_days`` settings (also run by ``zzd maintenance prune``)."""
    return Retention(
        db,
        clock,
        node_id=settings.node_id,
        event_days=settings.event_retention_days,
        outbox_days=settings.outbox_retention_days,
        receipt_days=settings.receipt_retention_days,
        outbox_sweep=prune_published,
    )
