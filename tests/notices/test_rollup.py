"""Rollup per child unit at every level, and the paged not-read / not-acknowledged lists, against brute force."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import select

from messaging.notices import validate_compose
from messaging.notices.schema import notice_receipts
from tests.notices.conftest import CITY, World

SEL = f"grid_worker@{CITY}/** | grid_volunteer@{CITY}/** | river_chief@{CITY}/** | village_secretary@{CITY}/**"


def _chain(w: World, unit_id: int) -> list[int]:
    u = w.index.unit(unit_id)
    return [u, *w.index.ancestors(u)]


async def test_rollup_and_pending_match_brute_force(world: World) -> None:
    w = world
    person, position = w.governor()
    c = validate_compose(client_msg_id="roll", title="t", body="b", selector=SEL, ack_required=True)
    res = await w.send(person, position, c)
    rng = random.Random(3)
    receipts = await w.receipts(res.notice_id)
    readers = {p for p, _ in receipts if rng.random() < 0.4}
    ackers = [(p, pos) for p, pos in receipts if p in readers and rng.random() < 0.5]
    # concurrent calls: also exercises the group-committed receipt writer
    await asyncio.gather(*(w.svc.mark_read(p, res.notice_id) for p in sorted(readers)))
    await asyncio.gather(*(w.svc.acknowledge(p, res.notice_id, position_id=pos) for p, pos in ackers))

    async with w.db.read() as conn:
        full = (
            await conn.execute(
                select(
                    notice_receipts.c.id,
                    notice_receipts.c.unit_id,
                    notice_receipts.c.read_at,
                    notice_receipts.c.acked_at,
                ).where(notice_receipts.c.notice_id == res.notice_id)
            )
        ).all()

    def brute(parent: int) -> dict[int, tuple[int, int, int]]:
        out: dict[int, list[int]] = {}
        for _rid, unit_id, read_at, acked_at in full:
            chain = _chain(w, int(unit_id))
            if parent not in chain:
                continue
            i = chain.index(parent)
            bucket = parent if i == 0 else chain[i - 1]
            s = out.setdefault(bucket, [0, 0, 0])
            s[0] += 1
            s[1] += read_at is not None
            s[2] += acked_at is not None
        return {w.index.unit_id(b): (s[0], s[1], s[2]) for b, s in out.items()}

    prog = await w.svc.progress(person, res.notice_id)
    assert prog.total.receipts == len(full) == res.receipts
    assert prog.total.read == sum(1 for r in full if r[2] is not None)
    assert prog.total.acked == len(ackers)
    # drill down: city → county → township → village, checking every level
    unit = w.index.unit(CITY)
    for _level in range(4):
        prog = await w.svc.progress(person, res.notice_id, unit=int(w.index.unit_id(unit)))
        got = {c.unit_id: (c.receipts, c.read, c.acked) for c in prog.by_child}
        assert got == brute(unit)
        assert prog.elsewhere == len(full) - sum(v[0] for v in got.values())
        busiest = max((c for c in prog.by_child if c.unit_id != w.index.unit_id(unit)), key=lambda c: c.receipts)
        unit = w.index.unit(busiest.unit_id)

    # paged "not read" and "not acknowledged" lists of one county
    county = w.index.unit("990101")
    for missing, col in (("read", 2), ("ack", 3)):
        inside = [r for r in full if w.index.contains(county, w.index.unit(int(r[1])))]
        expected = sorted(int(r[0]) for r in inside if r[col] is None)
        got_ids: list[int] = []
        after = None
        pages = 0
        while True:
            page = await w.svc.pending(person, res.notice_id, unit="990101", missing=missing, after=after, limit=97)
            got_ids += [i["receipt_id"] for i in page.items]
            pages += 1
            if page.next_after is None:
                break
            after = page.next_after
        assert got_ids == expected
        assert pages > 1
