"""Verifying ZZD webhooks (Standard Webhooks 1.0) on the app's side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["WebhookError", "verify_webhook"]


class WebhookError(Exception):
    """The request is not a genuine, fresh ZZD webhook: answer 400 and do nothing."""


def verify_webhook(secrets: str | Sequence[str], body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """The event (``{"id", "type", "timestamp", "data"}``) of a verified request.

    ``secrets``: the subscription's ``whsec_…`` secret, or several while the
    app itself rotates (any one verifying is enough). Signatures, a missing
    header, and timestamps more than five minutes off (replays) are refused.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    for secret in [secrets] if isinstance(secrets, str) else list(secrets):
        try:
            event = Webhook(secret).verify(body, lowered)
        except WebhookVerificationError:
            continue
        except (ValueError, TypeError) as exc:  # malformed signature header
            raise WebhookError(f"malformed webhook headers: {exc}") from exc
        if not isinstance(event, dict) or event.get("id") != lowered.get("webhook-id"):
            raise WebhookError("the body's event id does not match webhook-id")
        return event
    raise WebhookError("no valid signature (wrong secret, altered body, or a stale or replayed timestamp)")
