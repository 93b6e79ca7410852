"""Fan-out (S3-style): exact receipts, one labelled event per person, idempotent send, receipts."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from sqlalchemy import func, select

from kernel.errors import Conflict, Forbidden, NotFound
from messaging.notices import validate_compose
from messaging.notices.schema import notice_receipts, notices
from messaging.notices.service import SendResult
from messaging.schema import person_events
from org_tree.resolution import resolve
from org_tree.selectors import parse_selector
from tests.notices.conftest import CITY, World

EVERYONE = " | ".join(
    f"{role}@{CITY}/**"
    for role in ("grid_worker", "grid_volunteer", "grid_chief", "river_chief", "village_secretary", "women_federation")
)


def compose(cid: str, sel: str = EVERYONE, **kw: object) -> object:
    return validate_compose(client_msg_id=cid, title="防汛通知", body="请各网格做好准备", selector=sel, **kw)  # type: ignore[arg-type]


SECRETARIES = f"village_secretary@{CITY}/**"


async def to_secretaries(w: World, cid: str) -> tuple[SendResult, list[int]]:
    """The governor's notice ``cid`` to every village secretary in the city, sent; with its recipients."""
    person, position = w.governor()
    res = await w.send(person, position, compose(cid, SECRETARIES))
    return res, list(resolve(w.index, parse_selector(SECRETARIES)).persons)


async def notice_events_of(w: World, kind: str = "notice.new") -> list[tuple[int, dict[str, object]]]:
    async with w.db.read() as conn:
        rows = await conn.execute(
            select(person_events.c.person_id, person_events.c.payload)
            .where(person_events.c.kind == kind)
            .order_by(person_events.c.created_at, person_events.c.person_id, person_events.c.seq)
        )
        return [(int(p), json.loads(pl)) for p, pl in rows]


async def test_fanout_exact_receipts_and_one_event_per_person(world: World) -> None:
    w = world
    person, position = w.governor()
    audience = resolve(w.index, parse_selector(EVERYONE))
    expected = {(p, pos) for p, pos in zip(audience.person_ids, audience.position_ids, strict=True)}
    assert len(expected) > 2_500  # a few thousand receipts

    res = await w.send(person, position, compose("n1"))  # type: ignore[arg-type]
    assert not res.duplicate
    assert res.receipts == len(expected)
    assert res.persons == len(audience.persons)
    rows = await w.receipts(res.notice_id)
    assert set(rows) == expected
    assert len(rows) == len(expected)

    evs = await notice_events_of(w)
    per_person: dict[int, list[dict[str, object]]] = {}
    for p, payload in evs:
        per_person.setdefault(p, []).append(payload)
    assert set(per_person) == set(audience.persons)
    assert all(len(v) == 1 for v in per_person.values())  # exactly one event per person
    for p, (payload,) in per_person.items():
        got = {pos["position_id"] for pos in payload["positions"]}  # type: ignore[index, union-attr]
        assert got == set(audience.by_person[p])
    # Every vacancy fallback says so: a deputy or acting holder standing in for the vacant position
    # itself too (its label looked like a holder's: via_position_id and reason were left out).
    fallbacks = {
        (p, pos): (via, why)
        for p, pos, via, why in zip(
            audience.person_ids, audience.position_ids, audience.via_position_ids, audience.reasons, strict=True
        )
        if why != "holder"
    }
    assert {why for _, why in fallbacks.values()} >= {"deputy", "unit_head"}
    for p, (payload,) in per_person.items():
        for label in payload["positions"]:  # type: ignore[union-attr]
            want = fallbacks.get((p, label["position_id"]))  # type: ignore[index]
            assert (label.get("via_position_id"), label.get("reason")) == (want or (None, None)), label  # type: ignore[union-attr]
    # notify was called once, after commit, with every recipient once
    assert len(w.notified) == 1
    delivered = [pid for g in w.notified[0] for pid, _seq in g.recipients]
    assert sorted(delivered) == sorted(audience.persons)


async def test_person_with_two_positions_one_event_and_acks_per_position(world: World) -> None:
    w = world
    person, position = w.governor()
    res = await w.send(person, position, compose("n2", ack_required=True))  # type: ignore[arg-type]
    audience = resolve(w.index, parse_selector(EVERYONE))
    multi = next(p for p, pos in audience.by_person.items() if len(pos) >= 2)
    a, b = audience.by_person[multi][:2]
    (payload,) = [pl for p, pl in await notice_events_of(w) if p == multi]
    labels = {pos["position_id"] for pos in payload["positions"]}  # type: ignore[index, union-attr]
    assert {a, b} <= labels
    assert all("role" in pos and "unit" in pos for pos in payload["positions"])  # type: ignore[union-attr, operator]

    states = await w.svc.acknowledge(multi, res.notice_id, position_id=a, reply="收到")
    by_pos = {s.position_id: s for s in states}
    assert by_pos[a].acked_at is not None and by_pos[a].reply == "收到"
    assert by_pos[b].acked_at is None
    first = by_pos[a].acked_at
    w.clock.advance(30)
    again = await w.svc.acknowledge(multi, res.notice_id, position_id=a, reply="changed")
    by_pos = {s.position_id: s for s in again}
    assert by_pos[a].acked_at == first and by_pos[a].reply == "收到"  # duplicate ack changes nothing
    await w.svc.acknowledge(multi, res.notice_id, position_id=b)
    prog = await w.svc.progress(person, res.notice_id)
    assert prog.total.acked == 2 and prog.total.read == 2  # ack implies read, per position


async def test_non_recipient_and_missing_are_the_same_not_found(world: World) -> None:
    w = world
    person, position = w.governor()
    sel = f"grid_worker@{CITY}/**"
    res = await w.send(person, position, compose("n3", sel))  # type: ignore[arg-type]
    audience = resolve(w.index, parse_selector(sel))
    outsider = person  # the sender is not a grid worker
    assert outsider not in audience.persons
    with pytest.raises(NotFound) as e1:
        await w.svc.acknowledge(outsider, res.notice_id)
    with pytest.raises(NotFound) as e2:
        await w.svc.acknowledge(outsider, res.notice_id + 999)
    assert e1.value.code == e2.value.code and e1.value.message == e2.value.message
    recipient = audience.person_ids[0]
    with pytest.raises(NotFound):  # a real recipient, but not through this position
        await w.svc.acknowledge(recipient, res.notice_id, position_id=position)
    with pytest.raises(NotFound):  # progress is the sender's
        await w.svc.progress(recipient, res.notice_id)
    with pytest.raises(Forbidden):  # acting as a position one does not hold
        await w.send(recipient, position, compose("n3b", sel))  # type: ignore[arg-type]


async def test_idempotent_send_sequential_and_concurrent(world: World) -> None:
    w = world
    person, position = w.governor()
    sel = f"village_secretary@{CITY}/**"
    first = await w.send(person, position, compose("same", sel))  # type: ignore[arg-type]
    again = await w.send(person, position, compose("same", sel))  # type: ignore[arg-type]
    assert again.duplicate and again.notice_id == first.notice_id and again.receipts == first.receipts
    r1, r2 = await asyncio.gather(
        w.send(person, position, compose("race", sel)),  # type: ignore[arg-type]
        w.send(person, position, compose("race", sel)),  # type: ignore[arg-type]
    )
    assert r1.notice_id == r2.notice_id and {r1.duplicate, r2.duplicate} == {True, False}
    async with w.db.read() as conn:
        n = (await conn.execute(select(func.count()).select_from(notices))).scalar_one()
        rc = (await conn.execute(select(func.count()).select_from(notice_receipts))).scalar_one()
    assert n == 2 and rc == 2 * first.receipts
    # the retry answers every number of the first answer: unfilled was 0 on a retry
    everyone = await w.send(person, position, compose("all", EVERYONE))  # type: ignore[arg-type]
    retry = await w.send(person, position, compose("all", EVERYONE))  # type: ignore[arg-type]
    assert everyone.unfilled > 0 and dataclasses.replace(retry, duplicate=False) == everyone


async def test_recall_within_window(world: World) -> None:
    w = world
    person, position = w.governor()
    sel = f"village_secretary@{CITY}/**"
    res = await w.send(person, position, compose("r1", sel, priority="urgent"))  # type: ignore[arg-type]
    audience = resolve(w.index, parse_selector(sel))
    someone = audience.person_ids[0]
    await w.svc.mark_read(someone, res.notice_id)
    w.clock.advance(60)
    at = await w.svc.recall(person, res.notice_id)
    assert await w.svc.recall(person, res.notice_id) == at  # idempotent
    recalled = {p for p, _ in await notice_events_of(w, "notice.recalled")}
    assert recalled == set(audience.persons) | {person}
    with pytest.raises(Conflict):
        await w.svc.acknowledge(someone, res.notice_id)
    prog = await w.svc.progress(person, res.notice_id)
    assert prog.recalled and prog.total.read == 1
    with pytest.raises(NotFound):
        await w.svc.recall(someone, res.notice_id)  # not the sender
    late = await w.send(person, position, compose("r2", sel))  # type: ignore[arg-type]
    w.clock.advance(w.svc.config.recall_window.total_seconds() + 1)
    with pytest.raises(Conflict):
        await w.svc.recall(person, late.notice_id)


async def test_progress_events_are_coalesced(world: World) -> None:
    w = world
    res, secretaries = await to_secretaries(w, "p1")
    recips = secretaries[:20]
    for p in recips[:10]:
        await w.svc.mark_read(p, res.notice_id)
    assert await w.svc.flush_progress() == 1
    for p in recips[10:]:
        await w.svc.mark_read(p, res.notice_id)
    assert await w.svc.flush_progress() == 0  # within the interval: stays dirty
    w.clock.advance(w.svc.config.progress_interval)
    assert await w.svc.flush_progress() == 1
    assert await w.svc.flush_progress() == 0  # nothing changed since
    evs = [pl for p, pl in await notice_events_of(w, "notice.progress")]
    assert [e["read"] for e in evs] == [10, 20]
    await w.svc.mark_read(recips[0], res.notice_id)  # duplicate: not dirty
    w.clock.advance(5)
    assert await w.svc.flush_progress() == 0


async def test_a_read_committed_during_a_progress_flush_is_reported_by_the_next(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush reads its totals, a read commits before the flush ends: the next flush counts it."""
    from messaging.notices import service

    w = world
    if w.db.is_sqlite:
        pytest.skip("one writer: no read can commit inside the flush's transaction")
    res, secretaries = await to_secretaries(w, "pf1")
    first, second = secretaries[:2]
    await w.svc.mark_read(first, res.notice_id)
    totals = service.receipt_totals

    async def totals_then_a_read(conn: object, ids: object) -> object:
        out = await totals(conn, ids)  # type: ignore[arg-type]
        await w.svc.mark_read(second, res.notice_id)  # commits after the totals were read
        return out

    monkeypatch.setattr(service, "receipt_totals", totals_then_a_read)
    assert await w.svc.flush_progress() == 1
    monkeypatch.undo()
    w.clock.advance(w.svc.config.progress_interval)
    assert await w.svc.flush_progress() == 1
    evs = [pl for p, pl in await notice_events_of(w, "notice.progress")]
    assert [e["read"] for e in evs] == [1, 2]


async def test_delivered_marks_made_together_go_to_the_receipts_in_one_call(world: World) -> None:
    """The server's own "delivered" marks of one pass over the sockets: one call, each receipt once."""
    from messaging.notices.delivery import DeliveryRecorder

    w = world
    person, _ = w.governor()  # the sender
    res, secretaries = await to_secretaries(w, "dm1")
    recips = sorted(secretaries)[:30]
    calls: list[int] = []

    async def mark_many(marks: list[tuple[int, int]]) -> object:
        calls.append(len(marks))
        return await w.svc.mark_delivered_many(marks)

    rec = DeliveryRecorder(mark_many)
    for p in [*recips, recips[0], person]:  # one twice, and the sender, who holds no receipt
        rec.written(p, res.notice_id)
    await rec.close()
    rec.written(recips[1], res.notice_id)  # after close: refused
    assert calls == [len(recips) + 2]
    prog = await w.svc.progress(person, res.notice_id)
    assert prog.notice_total.delivered == len(recips) and prog.notice_total.read == 0
    assert await w.svc.mark_delivered_many([(p, res.notice_id) for p in recips]) == 0  # already delivered
