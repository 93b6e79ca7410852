"""Settings, read once from ``ZZD_*`` environment variables (and CLI flags).

Every field documents its default next to it. Domain packages never read
these: the composition root (``zzd.services``) passes plain values down.
Secrets may be given inline or, better, as a file (``ZZD_JWT_KEYS_FILE``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

logger = logging.getLogger(__name__)

__all__ = ["ConfigError", "Settings", "load_settings"]


class ConfigError(Exception):
    """A setting is invalid; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZZD_", frozen=True, extra="ignore")

    #: Where data lives. Default: a SQLite file in the current directory.
    database_url: str = "sqlite+aiosqlite:///./zzd.db"
    #: Broker between server processes. Default in-process (one process only).
    #: ``ZZD_REDIS_URL`` is accepted as an alias.
    broker_url: str = Field(default="memory://", validation_alias=AliasChoices("ZZD_BROKER_URL", "ZZD_REDIS_URL"))
    #: Prefix of every Redis channel, so deployments (and tests) can share one Redis.
    redis_prefix: str = "zzd"
    #: Listen address and port of ``zzd serve``.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: Server processes ``zzd serve`` runs on the one port (``--workers``); above 1 needs
    #: PostgreSQL and Redis (each worker's node id is ``<node_id>-w<i>``).
    workers: int = Field(default=1, ge=1, le=256)
    #: Identifies this process in logs and broker messages. Default: random.
    node_id: str = Field(default_factory=lambda: secrets.token_hex(4), min_length=1, max_length=64)

    #: HMAC keys as ``kid:secret`` pairs separated by commas; the first signs,
    #: all verify (rotation). Each secret must be at least 32 bytes.
    jwt_keys: SecretStr | None = None
    #: File holding the same format as ``ZZD_JWT_KEYS``. Default: none; with
    #: neither set, a key is generated once into ``zzd-jwt.keys`` beside the database.
    jwt_keys_file: Path | None = None
    jwt_issuer: str = "zzd"
    jwt_audience: str = "zzd-clients"
    #: Lifetime of access tokens (seconds). Default 15 minutes.
    access_token_ttl: int = Field(default=900, ge=30, le=86_400)
    #: Lifetime of a login session / refresh token (seconds). Default 30 days.
    refresh_token_ttl: int = Field(default=30 * 86_400, ge=300)
    #: Clock skew tolerated when checking token times (seconds).
    jwt_leeway: int = Field(default=10, ge=0, le=30)

    #: Browser origins allowed to open /ws (exact scheme://host[:port]).
    #: Default: none besides the own origin (below); clients without Origin are always allowed.
    allowed_origins: list[str] = Field(default_factory=list)
    #: Also allow the server's own origin (scheme and ``Host`` of the request), so the web
    #: client it serves can connect. Default on; turn off when only the allowlist may connect.
    allow_own_origin: bool = True
    #: Largest WebSocket message accepted, bytes (OWASP: 64 KiB).
    ws_max_size: int = Field(default=65_536, ge=1024, le=1_048_576)
    #: Seconds a new socket has to send its ``hello`` frame.
    ws_auth_timeout: float = Field(default=10.0, gt=0)
    #: Frames queued per socket before it is closed as a slow consumer (1013).
    ws_queue_max: int = Field(default=256, ge=8)
    #: Seconds one frame may take to send before the socket is closed (1013).
    ws_send_timeout: float = Field(default=30.0, gt=0)
    #: WebSocket ping interval and timeout, seconds.
    ws_ping_interval: float = Field(default=20.0, gt=0)
    #: Kernel timeout for unacknowledged data on accepted sockets (ms); frees
    #: zero-window clients that keepalive cannot (RELIABILITY finding 1).
    tcp_user_timeout_ms: int = Field(default=30_000, ge=1000, le=2**31 - 1)  # the socket option is a C int
    #: Concurrent sockets per person; the oldest is closed (4409) beyond it.
    max_connections_per_person: int = Field(default=5, ge=1)
    #: Messages one person may send per minute before ``rate_limited``.
    send_rate_per_minute: int = Field(default=100, ge=1)
    #: Refused sends within a minute after which the socket is closed with 1008 (abuse).
    send_abuse_after: int = Field(default=20, ge=1)
    #: Whole-server connection cap; handshakes beyond it get HTTP 503.
    limit_concurrency: int = Field(default=20_000, ge=10)
    #: Upgraded WebSockets still waiting for their hello to be answered, after which new handshakes
    #: get HTTP 503 at once: in a reconnect storm the excess is shed and retried with back-off
    #: instead of stalling every handshake behind the hellos in progress (RELIABILITY S9).
    max_pending_hellos: int = Field(default=256, ge=1)
    #: On SIGTERM, seconds running requests get to finish before their sockets close with 1012
    #: (the rest of shutdown fits in what remains of 10 s).
    shutdown_drain_timeout: float = Field(default=5.0, ge=0, le=8)
    #: Seconds between safety polls that repair lost broker wake-ups.
    safety_poll_interval: float = Field(default=5.0, gt=0)
    #: Sign-in throttling (``limits`` notation, e.g. ``10/15minutes``): attempts per login
    #: (cleared by a success) and failed attempts per client address. Shared through
    #: Redis when the broker is Redis, else counted in this process.
    login_limit_per_login: str = "10/15minutes"
    login_failures_per_address: str = "30/minute"
    #: Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated IPs or CIDRs, or "*").
    #: Empty: the TCP peer is the client address (throttling, audit), whatever headers it sends.
    forwarded_allow_ips: str = ""
    #: Password hashes computed at once (each Argon2id hash takes 64 MiB); default half the cores.
    password_hash_concurrency: int | None = Field(default=None, ge=1, le=64)
    #: Sign-ins that may wait for a hashing slot before more are refused with 429.
    password_hash_queue: int = Field(default=64, ge=0)
    #: Days audit entries are kept (the Cybersecurity Law asks for at least six months).
    audit_retention_days: int = Field(default=190, ge=183)
    #: Days per-person events are kept; a client whose cursor is older gets ``resync_required``
    #: (messaging/retention.py, one process at a time, a pass at most hourly).
    event_retention_days: int = Field(default=30, ge=1)
    #: Days outbox rows are kept after they were published (pending app deliveries keep theirs).
    outbox_retention_days: int = Field(default=30, ge=1)
    #: Days notice receipts (who read and acknowledged) are kept; unset keeps them for ever.
    receipt_retention_days: int | None = Field(default=None, ge=30)
    #: Seconds between runs of the retention job in each process.
    retention_interval: float = Field(default=60.0, gt=0)
    #: Seconds between checks for tables grown enough to analyze again (PostgreSQL; kernel/db/dialect.py).
    statistics_interval: float = Field(default=10.0, gt=0)
    #: Days a one-time activation code from ``zzd person import`` stays valid.
    activation_code_days: int = Field(default=14, ge=1, le=365)
    #: Seconds between checks of the org version; a change made by any process
    #: reaches this process's routing index within about this long.
    index_refresh_interval: float = Field(default=0.5, gt=0)
    #: Build the 找岗位 directory in the background at start-up (and after an org index rebuild),
    #: so the first search does not wait for it (docs/directory.md). Off: built on first use.
    directory_warm: bool = True
    #: Seconds a search (找岗位) waits for the directory being built before ``503 unavailable``.
    directory_wait: float = Field(default=10.0, gt=0)
    #: Seconds between runs of due DING steps and sender progress flushes.
    background_interval: float = Field(default=1.0, gt=0)
    #: DING ladder for urgent notices: remind in the app, then escalate out of band (seconds after sending).
    ding_remind_after: int = Field(default=1800, ge=0)
    ding_escalate_after: int = Field(default=3600, ge=0)
    #: A notice may be recalled for this many seconds after sending.
    notice_recall_window: int = Field(default=86_400, ge=0)
    #: Deferred notice and group-message fan-out: how long a process's claim on
    #: finishing a notice's (a group message's) fan-out is exclusive (a killed
    #: process's is taken over after it), and recipients whose events are
    #: written per transaction.
    notice_fanout_lease: float = Field(default=30.0, ge=1)
    notice_fanout_chunk: int = Field(default=10_000, ge=1, le=100_000)
    #: Seconds a group message's sweep of offline members waits after the send, leaving the
    #: pending rows to the other processes' connected-first claims (docs/conversations.md).
    group_fanout_sweep_after: float = Field(default=0.2, ge=0, le=600)
    #: A notice with more receipts than this commits them packed in one row and writes
    #: them after the commit, connected recipients first (messaging/notices/deferred.py).
    notice_inline_receipts: int = Field(default=20_000, ge=0)
    #: Task timers: how long a process's claim on DING calls is exclusive (a killed
    #: process's are taken over after this; deadline timers are claimed by row lock
    #: and freed at once), timers escalated per transaction, and the pause after each
    #: batch of a backlog as a fraction of the batch's duration (bounds its share of the database).
    task_timer_lease: float = Field(default=60.0, ge=1)
    task_timer_batch: int = Field(default=200, ge=1, le=5000)
    task_timer_pause: float = Field(default=0.0, ge=0, le=100)
    #: Most persons an ad-hoc group may hold (``group_too_large`` beyond).
    group_max_members: int = Field(default=500, ge=2)
    #: "Who has read a message" is answered for conversations of up to this many readers.
    read_list_max: int = Field(default=200, ge=1)
    #: A message may be edited / recalled by its sender for this many seconds.
    message_edit_window: int = Field(default=900, ge=0)
    message_recall_window: int = Field(default=86_400, ge=0)
    #: SMS/voice gateway for DING escalations; unset: escalations are only logged.
    notifier_url: str | None = None
    #: HMAC key signing gateway requests (required with ``ZZD_NOTIFIER_URL``).
    notifier_secret: SecretStr | None = None
    #: Directory of uploaded files (content-addressed). Default: ``zzd-uploads``
    #: beside the SQLite file, or in the current directory with PostgreSQL.
    upload_dir: Path | None = None
    #: Largest accepted upload, bytes. Default 10 MiB.
    upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024**3)
    #: Uploads one person may start per minute (per process) before ``rate_limited``.
    upload_rate_per_minute: int = Field(default=60, ge=1)
    #: Seconds an upload may go without a byte arriving before it is abandoned (408).
    upload_idle_timeout: float = Field(default=60.0, gt=0)
    #: --- The open platform (docs/apps.md, docs/webhooks.md) ---
    #: Lifetime of an app token from the client-credentials grant (seconds). Default 10 minutes.
    app_token_ttl: int = Field(default=600, ge=30, le=86_400)
    #: On secret rotation, how long the old secrets keep working by default (seconds).
    app_secret_overlap: int = Field(default=86_400, ge=0, le=30 * 86_400)
    #: Webhook targets: networks (CIDR) allowed besides public addresses, e.g. ``["10.8.0.0/16"]``.
    #: Loopback, private, link-local and other special addresses are refused unless listed here.
    webhook_allowed_networks: list[str] = Field(default_factory=list)
    #: Whether public (globally routable) addresses are allowed as webhook targets.
    webhook_allow_public: bool = True
    #: Seconds one webhook request may take (connect + answer) before it counts as failed.
    webhook_timeout: float = Field(default=10.0, gt=0, le=120)
    #: Attempts before a delivery is dead-lettered; first retry after ``webhook_backoff_base``
    #: seconds, doubling up to ``webhook_backoff_cap``, each with ±20 % jitter.
    webhook_max_attempts: int = Field(default=12, ge=1, le=50)
    webhook_backoff_base: float = Field(default=5.0, gt=0)
    webhook_backoff_cap: float = Field(default=3600.0, gt=0)
    #: Consecutive failed attempts after which an endpoint is disabled and its owner told.
    webhook_disable_after: int = Field(default=50, ge=1)
    #: Deliveries in flight per process, and per endpoint (subscription).
    delivery_concurrency: int = Field(default=32, ge=1, le=1000)
    delivery_per_endpoint: int = Field(default=4, ge=1, le=100)
    #: Seconds a process's claim on a delivery is exclusive (a killed process's claim lapses after it).
    delivery_lease: float = Field(default=60.0, ge=1)
    #: Seconds between delivery worker polls (a new outbox event also wakes the worker in-process).
    delivery_poll_interval: float = Field(default=0.5, gt=0)
    #: Least seconds between two passes of the app dispatcher woken by new outbox rows: under load one
    #: pass then takes the rows of many commits instead of a transaction per commit (0: a pass per wake).
    dispatch_wake_gap: float = Field(default=0.05, ge=0, le=5)
    #: Whether each server process sends webhooks itself (the embedded default). False: ``zzd delivery``
    #: processes send them (zzd/delivery_process.py), so attempts never share a server's event loop with
    #: chat; needs the Redis broker, on which the servers wake them.
    delivery_in_server: bool = True
    #: Database pool size per process.
    db_pool_size: int = Field(default=20, ge=1)
    #: PostgreSQL connections of direct chat's own, beside the shared pool (0: chat uses the shared pool).
    #: Why: under app traffic the report filings, stream claims and dispatch held every pooled connection
    #: while their event loop was short of CPU, and a chat send waited up to 5 s for one (BENCHMARKS.md,
    #: issue 13); chat writes one group-committed batch at a time, so a couple of connections are all it needs.
    db_chat_pool_size: int = Field(default=2, ge=0)
    log_level: str = "info"
    #: ``text`` for a terminal, ``json`` for one JSON object per line with request and person (zzd/logs.py).
    log_format: Literal["text", "json"] = "text"

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, v: str) -> str:
        if not v.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must start with memory:// or redis://")
        return v

    @field_validator("login_limit_per_login", "login_failures_per_address")
    @classmethod
    def _rate(cls, v: str) -> str:
        from limits import parse

        try:
            parse(v)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a rate like 10/15minutes") from exc
        return v

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        if v.lower() not in _LOG_LEVELS:
            raise ValueError(f"{v!r} is not one of {', '.join(_LOG_LEVELS)}")
        return v.lower()

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, v: str) -> str:
        if v.strip():
            for item in v.split(","):
                if item.strip() != "*":
                    _network(item.strip(), "an IP address or CIDR network (or *)")
        return v

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            _network(item, "a CIDR network like 10.8.0.0/16")
        return v

    @field_validator("jwt_keys")
    @classmethod
    def _inline_keys(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            _parse_keys(v.get_secret_value(), "ZZD_JWT_KEYS", prefix=False)
        return v

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for o in v:
            if not o.startswith(("http://", "https://")) or o.endswith("/"):
                raise ValueError(f"{o!r} is not an origin like https://host[:port]")
        return [o.lower() for o in v]

    @field_validator("notifier_url")
    @classmethod
    def _notifier_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return v

    def signing_keys(self) -> dict[str, bytes]:
        """``kid → secret`` in rotation order (first signs)."""
        if self.jwt_keys is not None:
            return _parse_keys(self.jwt_keys.get_secret_value(), "ZZD_JWT_KEYS")
        if self.jwt_keys_file is not None:
            try:
                raw = self.jwt_keys_file.read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"ZZD_JWT_KEYS_FILE: cannot read {self.jwt_keys_file}: {exc}") from exc
            return _parse_keys(raw, "ZZD_JWT_KEYS_FILE")
        return _parse_keys(_local_key_file(self.database_url), "the generated key file")

    def upload_path(self) -> Path:
        """Where uploads live: the setting, else beside the SQLite file like the key file."""
        if self.upload_dir is not None:
            return self.upload_dir
        if self.database_url.startswith("sqlite+aiosqlite:///"):
            return Path(self.database_url.removeprefix("sqlite+aiosqlite:///")).parent / "zzd-uploads"
        return Path("zzd-uploads")


_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _network(item: str, what: str) -> None:
    try:
        ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise ValueError(f"{item!r} is not {what}") from None


def _parse_keys(raw: str, source: str, *, prefix: bool = True) -> dict[str, bytes]:
    """``kid:secret[,kid:secret…]`` → ``kid → secret``; ``source`` names the setting in the error."""
    keys: dict[str, bytes] = {}
    for part in raw.split(","):
        kid, sep, secret = part.strip().partition(":")
        if not sep or not kid or len(secret.encode()) < 32:
            problem = "each entry must be kid:secret with a secret of at least 32 bytes"
            if prefix:
                raise ConfigError(f"{source}: {problem}")
            raise ValueError(problem)
        keys[kid] = secret.encode()
    return keys


def _local_key_file(database_url: str) -> str:
    """A per-installation key for the embedded default, created on first start."""
    path = Path("zzd-jwt.keys")
    if database_url.startswith("sqlite+aiosqlite:///"):
        db_path = Path(database_url.removeprefix("sqlite+aiosqlite:///"))
        path = db_path.parent / "zzd-jwt.keys"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"k1:{secrets.token_urlsafe(48)}\n")
        path.chmod(0o600)
        logger.info("generated a JWT signing key in %s", path)
    return path.read_text().strip()


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment plus explicit overrides (CLI flags).

    Raises:
        ConfigError: naming the ``ZZD_*`` variable that is wrong.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:  # a list setting whose value is not JSON: pydantic-settings names only the field
        field = re.search(r'field "(\w+)"', str(exc))
        name = _env_name(field.group(1)) if field else "a ZZD_ setting"
        raise ConfigError(f'{name}: not a JSON list (e.g. ["…"])') from exc
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            parts = [str(p) for p in err["loc"] if isinstance(p, str)]
            name = _env_name(parts[0]) if parts else "a ZZD_ setting"
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("; ".join(problems)) from exc


def _env_name(field: str) -> str:
    """The environment variable(s) of a field (by name or alias), as the operator sets them."""
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else []
        if field.lower() == name or field in choices:
            return " or ".join(choices) if choices else "ZZD_" + name.upper()
    return field.upper()
