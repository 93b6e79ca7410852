"""会议签到 — a meeting check-in app ("刷脸入场").

It pushes a work notice (acknowledgement required) to a selector, then a
check-in device at the door posts each attendee's arrival through the bot API
as their acknowledgement, and the organiser's live count comes from the
notice's progress. One JSON line is printed per step.

Run against a local server (an app with ``notice:send``)::

    python -m apps.examples.meeting_checkin --server http://127.0.0.1:8000 \\
        --client-id zzdapp_… --client-secret zzdsec_… \\
        --selector 'village_secretary@330802/**' --title 明早九点开会 --attendee 1305 --attendee 1306
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from collections.abc import Sequence
from typing import Any

from apps.sdk import AppClient, ZzdApiError

__all__ = ["main", "run"]


async def run(
    zzd: AppClient, selector: str, title: str, attendees: Sequence[int], *, key: str | None = None
) -> list[dict[str, Any]]:
    """Notify, check everyone in, and return the steps (the last one carries the final count)."""
    steps: list[dict[str, Any]] = []
    sent = await zzd.send_notice(selector, title, key=key or f"meeting-{secrets.token_hex(6)}", ack_required=True)
    steps.append({"step": "notified", "notice_id": sent["notice_id"]})
    for person in attendees:
        try:
            await zzd.check_in(sent["notice_id"], person, reply="已签到")
            outcome = "checked_in"
        except ZzdApiError as exc:  # not invited (404), or the notice was recalled (409)
            outcome = exc.code
        total = (await zzd.progress(sent["notice_id"]))["notice_total"]
        steps.append({"step": outcome, "person_id": person, "checked_in": total["acked"], "invited": total["receipts"]})
    return steps


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--server", default="http://127.0.0.1:8000")
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--selector", required=True)
    ap.add_argument("--title", required=True)
    ap.add_argument("--attendee", type=int, action="append", default=[])
    args = ap.parse_args(argv)

    async def go() -> None:
        async with AppClient(args.server, args.client_id, args.client_secret) as zzd:
            for step in await run(zzd, args.selector, args.title, args.attendee):
                print(json.dumps(step, ensure_ascii=False), flush=True)

    asyncio.run(go())


if __name__ == "__main__":
    main()
