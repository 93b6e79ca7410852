"""Tasks from a notice that asks for action, and ``notice.acknowledged`` outbox events, on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kernel.errors import Forbidden, NotFound
from kernel.jobs import Jobs
from messaging.notices import LoggingNotifier, NoticeService
from messaging.notices.model import validate_compose
from messaging.notices.schema import notice_receipts
from messaging.outbox import read_unpublished
from messaging.tasks.lifecycle import Action
from tests.notices.conftest import notice_service
from tests.tasks.conftest import TaskWorld


def _notices(w: TaskWorld, jobs: Jobs | None = None) -> NoticeService:
    return notice_service(w.db, w.events, w.clock, w.notified.append, w.index, LoggingNotifier(), jobs or Jobs())


async def _send(w: TaskWorld) -> tuple[int, int, int, list[int]]:
    """A township head asks its villages' river chiefs to act; returns head, head position, notice, positions."""
    township = w.index.unit("990101001")
    head, head_pos = next((p, pos) for p, pos in w.held("township_head") if w.unit_of(pos) == township)
    compose = validate_compose(
        client_msg_id="n1", title="清理河道", body="本周内清理辖区河道垃圾", selector="河长@990101001/**",
        ack_required=True,
    )  # fmt: skip
    jobs = Jobs()
    sent = await _notices(w, jobs).send(head, head_pos, compose)
    await jobs.idle()  # the fan-out the send started
    async with w.db.read() as conn:
        rows = await conn.execute(
            select(notice_receipts.c.position_id).where(notice_receipts.c.notice_id == sent.notice_id).distinct()
        )
        positions = sorted(int(r[0]) for r in rows)
    return head, head_pos, sent.notice_id, positions


async def test_tasks_for_a_notices_addressed_positions(tw: TaskWorld) -> None:
    w = tw
    head, head_pos, nid, positions = await _send(w)
    made = await w.tasks.create_for_notice(head, nid, client_msg_id="t1")
    assert sorted(t.owner_position_id for t in made) == positions
    assert all(t.source == "notice" and t.source_id == nid and t.title == "清理河道" for t in made)
    assert all(t.creator_position_id == head_pos for t in made)
    again = await w.tasks.create_for_notice(head, nid, client_msg_id="t1")
    assert sorted(t.id for t in again) == sorted(t.id for t in made)
    # a recipient is not the sender side: it may not turn the notice into tasks
    owner = w.holder(positions[0])
    with pytest.raises(NotFound):
        await w.tasks.create_for_notice(owner, nid, client_msg_id="t2")
    t = await w.tasks.act(owner, positions[0], made[0].id, Action.ACCEPT, 1)
    assert t.state == "accepted"
    # as_position, like every other write: the sender position works, another (even held) does not
    same = await w.tasks.create_for_notice(head, nid, client_msg_id="t1", as_position=head_pos)
    assert sorted(x.id for x in same) == sorted(x.id for x in made)
    with pytest.raises(Forbidden):
        await w.tasks.create_for_notice(head, nid, client_msg_id="t3", as_position=positions[0])
    with pytest.raises(NotFound):
        await w.tasks.create_for_notice(owner, nid, client_msg_id="t4", as_position=positions[0])


async def test_notice_acknowledgements_become_outbox_events_once(tw: TaskWorld) -> None:
    w = tw
    _, _, nid, positions = await _send(w)
    svc = _notices(w)
    person = w.holder(positions[0])
    await svc.mark_read(person, nid)  # a read alone is not an acknowledgement: no event
    async with w.db.read() as conn:
        assert [e for e in await read_unpublished(conn) if e.type == "notice.acknowledged"] == []
        ids = [
            int(r[0])
            for r in await conn.execute(
                select(notice_receipts.c.id).where(
                    notice_receipts.c.notice_id == nid, notice_receipts.c.person_id == person
                )
            )
        ]
    await svc.acknowledge(person, nid, reply="收到")
    w.clock.advance(5)
    await svc.acknowledge(person, nid, reply="再次")  # repeated: the receipts stand, no new event
    async with w.db.read() as conn:
        evs = [e for e in await read_unpublished(conn) if e.type == "notice.acknowledged"]
    assert len(evs) == len(ids) and {e.aggregate_id for e in evs} == {nid}
    assert {e.payload["receipt_id"] for e in evs} == set(ids)
    assert evs[0].payload["reply"] == "收到" and evs[0].payload["person_id"] == person
    await svc.close()
