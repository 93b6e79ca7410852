"""A small typed, async Python SDK for ZZD apps (docs/apps.md, docs/webhooks.md).

It depends only on httpx, websockets and standardwebhooks — nothing of the
server — so an app can vendor-free ``pip install zzd`` and use ``apps.sdk``::

    async with AppClient("https://zzd.example.gov.cn", client_id, client_secret) as zzd:
        sent = await zzd.send_notice("村书记@330802/**", "明早九点开会", key="meeting-1", ack_required=True)
        async for ev in zzd.stream():            # or verify webhooks with verify_webhook()
            handle(ev.event)
            await ev.ack()
"""

from apps.sdk.client import AppClient, ZzdApiError
from apps.sdk.stream import StreamEvent
from apps.sdk.webhooks import WebhookError, verify_webhook

__all__ = ["AppClient", "StreamEvent", "WebhookError", "ZzdApiError", "verify_webhook"]
