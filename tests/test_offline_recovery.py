"""S11: a recipient offline while 10,000 messages arrive gets all of them on resume, in order."""

from __future__ import annotations

import asyncio

import pytest

from messaging.chat import SendRequest
from tests.client import Client, login, new_people
from tests.conftest import RunningServer

pytestmark = pytest.mark.slow

N = 10_000


async def test_resume_after_10000_missed_messages_is_complete_ordered_and_paged(server: RunningServer) -> None:
    s = server.services_obj  # type: ignore[attr-defined]
    (a_id, _), (b_id, b_login) = await new_people(s, 2)
    tok = (await login(server.http, b_login))["access_token"]
    b = await Client.connect(server.ws, tok)
    epoch = b.hello["epoch"]
    await b.close()
    # Many concurrent senders share group commits, as real traffic would.
    ids: list[int] = []
    for start in range(0, N, 500):
        results = await asyncio.gather(
            *(s.chat.send(SendRequest(a_id, b_id, f"off-{i}", f"m{i}")) for i in range(start, start + 500))
        )
        ids += [r.message_id for r in results]

    # Pull form: pages of at most 500, no gaps, every message once.
    pulled: list[int] = []
    since, pages = 0, 0
    while True:
        page = await s.events.read(b_id, epoch=epoch, since=since, limit=500)
        assert len(page.events) <= 500
        pulled += [seq for seq, _, _ in page.events]
        since, pages = page.next_since, pages + 1
        if not page.limited:
            break
    assert pulled == list(range(1, N + 1)) and pages >= N // 500

    # Push form: resuming over the WebSocket streams all of them, in commit order.
    b2 = await Client.connect(server.ws, tok, resume={"epoch": epoch, "since": 0})
    evs = await b2.wait_events(N, timeout=60)
    assert [e["seq"] for e in evs] == list(range(1, N + 1))
    assert sorted(e["data"]["id"] for e in evs) == sorted(ids)
    assert [e["data"]["id"] for e in evs] == sorted(ids)  # commit order = id order per sender
    await b2.close()
