"""DING: persisted steps run exactly once across two schedulers, only for those still owing a receipt."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from sqlalchemy import select

from messaging.notices import DingPolicy, DingScheduler, LoggingNotifier, NoticeConfig, validate_compose
from messaging.schema import person_events
from messaging.unit_of_work import UnitOfWork
from org_tree.resolution import resolve
from org_tree.selectors import parse_selector
from tests.notices.conftest import CITY, World, make_world

SEL = f"village_secretary@{CITY}/** | river_chief@{CITY}/**"
POLICY = DingPolicy(steps=((timedelta(minutes=30), "remind"), (timedelta(minutes=60), "escalate")))


async def reminders(w: World) -> list[tuple[int, dict[str, object]]]:
    async with w.db.read() as conn:
        rows = await conn.execute(
            select(person_events.c.person_id, person_events.c.payload).where(person_events.c.kind == "notice.remind")
        )
        return [(int(p), json.loads(pl)) for p, pl in rows]


def scheduler(w: World, node: str, notifier: LoggingNotifier) -> DingScheduler:
    return DingScheduler(
        UnitOfWork(w.db, w.events, w.clock, w.notified.append), notifier, lambda: w.index, node_id=node
    )


async def test_ding_runs_once_with_two_processes_and_survives_restart(tree_url: str) -> None:
    config = NoticeConfig(ding=POLICY)
    a = await make_world(tree_url, config=config)
    b = await make_world(tree_url, clock=a.clock, config=config)  # a second "process": own engine and index
    try:
        person, position = a.governor()
        c = validate_compose(client_msg_id="ding", title="紧急", body="b", selector=SEL, priority="urgent")
        res = await a.send(person, position, c)
        audience = resolve(a.index, parse_selector(SEL))
        everyone = sorted(audience.persons)
        readers = set(everyone[::3])
        for p in readers:
            await a.svc.mark_read(p, res.notice_id)
        owing = set(everyone) - readers

        na, nb = LoggingNotifier(), LoggingNotifier()
        sa, sb = scheduler(a, "A", na), scheduler(b, "B", nb)
        assert await sa.run_due() == [] and await sb.run_due() == []  # nothing due yet
        a.clock.advance(29 * 60)
        assert await asyncio.gather(sa.run_due(), sb.run_due()) == [[], []]

        a.clock.advance(60)
        out_a, out_b = await asyncio.gather(sa.run_due(), sb.run_due())
        done = [o for o in out_a + out_b if o.status == "done"]
        assert len(done) == 1 and done[0].action == "remind" and done[0].recipients == len(owing)
        got = await reminders(a)
        assert sorted(p for p, _ in got) == sorted(owing)  # exactly once each, nobody who read it
        assert all(pl["step"] == 0 and pl["notice_id"] == res.notice_id for _, pl in got)

        # a "restart": fresh schedulers on fresh engines find the remaining step in the database
        await b.close()
        b2 = await make_world(tree_url, clock=a.clock, config=config)
        try:
            late_reader = sorted(owing)[0]
            await a.svc.mark_read(late_reader, res.notice_id)
            a.clock.advance(30 * 60)
            sb2 = scheduler(b2, "B2", nb)
            out = await asyncio.gather(sa.run_due(), sb2.run_due(), sa.run_due())
            assert sum(1 for o in out for s in o if s.status == "done") == 1
            sent = na.sent + nb.sent
            assert len(sent) == 1
            assert {p for p, _ in sent[0].recipients} == owing - {late_reader}
            assert sent[0].idempotency_key == f"notice-{res.notice_id}-step-1"
            assert len(await reminders(a)) == len(owing)  # no second reminder
            a.clock.advance(3600)
            assert await sa.run_due() == [] and await sb2.run_due() == []
            steps = await sa.pending_steps([res.notice_id])
            assert [s["done_at"] is not None for s in steps] == [True, True]
        finally:
            await b2.close()
    finally:
        await a.close()


async def test_expired_lease_is_taken_over_and_recall_cancels(world: World) -> None:
    w = world
    w.svc.config = NoticeConfig(ding=POLICY)
    person, position = w.governor()
    c = validate_compose(client_msg_id="d2", title="紧急", body="b", selector=SEL, priority="urgent")
    res = await w.send(person, position, c)
    n = LoggingNotifier()
    s1, s2 = scheduler(w, "one", n), scheduler(w, "two", n)
    w.clock.advance(30 * 60)
    # "one" claims and dies before running the step: simulate by claiming only
    claimed = await s1._claim("one:dead", w.clock.now())
    assert len(claimed) == 1
    assert await s2.run_due() == []  # leased
    w.clock.advance(3 * 60)  # lease (2 min) expired, and the escalate step is not yet due
    out = await s2.run_due()
    assert [(o.action, o.status) for o in out] == [("remind", "done")]
    await w.svc.recall(person, res.notice_id)
    w.clock.advance(3600)
    assert await s2.run_due() == []
    assert n.sent == []


class FlakyNotifier(LoggingNotifier):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def escalate(self, escalation: object) -> None:  # type: ignore[override]
        from messaging.notices import EscalationFailed

        if self.failures > 0:
            self.failures -= 1
            raise EscalationFailed("gateway down")
        await super().escalate(escalation)  # type: ignore[arg-type]


async def test_failed_escalation_is_retried_later(world: World) -> None:
    w = world
    w.svc.config = NoticeConfig(ding=DingPolicy(steps=((timedelta(minutes=5), "escalate"),)))
    person, position = w.governor()
    c = validate_compose(client_msg_id="d3", title="紧急", body="b", selector=SEL, priority="urgent", ack_required=True)
    await w.send(person, position, c)
    n = FlakyNotifier(failures=1)
    s = scheduler(w, "x", n)
    w.clock.advance(5 * 60)
    assert [o.status for o in await s.run_due()] == ["retry"]
    assert await s.run_due() == []  # released until retry_after
    w.clock.advance(61)
    assert [o.status for o in await s.run_due()] == ["done"]
    assert len(n.sent) == 1


async def test_a_position_retired_after_the_send_is_not_reminded(world: World) -> None:
    """S21 (d): the DING ladder skips receipts of positions retired since the send; the rest are reminded."""
    w = world
    w.svc.config = NoticeConfig(ding=POLICY)
    person, position = w.governor()
    c = validate_compose(client_msg_id="d4", title="紧急", body="b", selector=SEL, priority="urgent", ack_required=True)
    res = await w.send(person, position, c)
    addressed = resolve(w.index, parse_selector(SEL))
    retired = list(dict.fromkeys(addressed.position_ids))[:3]
    for pid in retired:
        assert w.index.retire_position(pid)
    w.clock.advance(30 * 60)
    [out] = await scheduler(w, "x", LoggingNotifier()).run_due()
    reminded = await reminders(w)
    labels = {lb["position_id"] for _, ev in reminded if ev["notice_id"] == res.notice_id for lb in ev["positions"]}
    assert labels and not labels & set(retired)
    assert out.recipients == len({p for p, _ in reminded})


def test_the_docs_number_the_ladder_as_the_events_do() -> None:
    """The first reminder above carries ``step: 0``: the AsyncAPI description and protocol.md say "from 0".

    A client written from the docs once took ``step`` for a 1-based reminder count.
    """
    from pathlib import Path

    from messaging.shapes import NoticeRemind

    description = NoticeRemind.model_fields["step"].description or ""
    assert "counted from 0" in description and "step 0" in description
    protocol = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    [row] = [line for line in protocol.splitlines() if line.startswith("| `notice.remind` |")]
    assert "counted from 0" in row and "step 0" in row and "`manual: true`" in row
