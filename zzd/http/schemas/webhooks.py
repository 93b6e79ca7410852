"""Answers of ``/api/v1/bot/subscriptions`` (docs/webhooks.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from zzd.http.contract import WireModel

__all__ = ["AttemptList", "DeliveryList", "Redelivering", "SigningSecret", "SubscriptionList", "SubscriptionView"]


class SubscriptionView(WireModel):
    id: int
    app_id: int
    event_types: list[str]
    filters: dict[str, Any]
    mode: str = Field(description="webhook or stream")
    url: str | None
    status: str = Field(description="active or disabled")
    disabled_reason: str | None
    consecutive_failures: int
    previous_secret_expires_at: datetime | None
    secret: str | None = Field(None, description="whsec_… signing secret, only in the answer that made it")


class SubscriptionList(WireModel):
    subscriptions: list[SubscriptionView]


class SigningSecret(WireModel):
    secret: str = Field(description="the new whsec_… secret, shown this once")
    previous_secret_expires_at: datetime


class Attempt(WireModel):
    attempt_id: int
    delivery_id: int
    event_id: str
    event_type: str
    attempt: int
    at: datetime
    status: int | None = Field(description="HTTP status; null when no answer came")
    latency_ms: int
    error: str | None
    response_excerpt: str | None
    delivery_state: str


class AttemptList(WireModel):
    attempts: list[Attempt]


class Delivery(WireModel):
    delivery_id: int
    event_id: str
    event_type: str
    state: str = Field(description="pending, delivered or dead")
    attempts: int
    next_attempt_at: datetime | None = Field(description="when a pending delivery is tried next; null otherwise")
    delivered_at: datetime | None
    event_created_at: datetime | None


class DeliveryList(WireModel):
    deliveries: list[Delivery]


class Redelivering(WireModel):
    redelivering: int
