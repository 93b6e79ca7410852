"""Synthetic persons and assignments for demos and benchmarks.

Why: no real staff lists can ship with the project, yet routing must be
measured at province scale (about 1.2 million persons for Zhejiang). The
generator is deterministic for a seed, fills every vacant position of the
imported tree, leaves a small share vacant (so the vacancy fallback is
exercised), gives some positions a deputy, and lets a share of full-time grid
workers also hold their village's 河长 or 村妇联执委 position, as real grid
workers do. Rows go in through ``org_tree.bulk`` in one transaction.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from kernel.clock import Clock, SystemClock
from kernel.db.database import Database
from kernel.schema import persons
from org_tree.bulk import bulk_insert, lift_statement_timeout, next_id, sync_sequence
from org_tree.importer import Progress
from org_tree.org_schema import assignments, positions, roles, units
from org_tree.versioning import bump_version

logger = logging.getLogger(__name__)

__all__ = ["PeopleReport", "generate_people", "person_name"]

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国建华志强文辉海燕红梅玉兰晓东丹丹俊杰子涵浩然"
    "欣怡梓萱一诺宇轩佳怡思远嘉豪雨涵晨曦振宇雅琴桂芳春梅秋菊冬梅宏伟永刚德明国庆红军卫东立新向阳"
)
_MULTI_ROLES = ("river_chief", "women_federation")


# Given names: every single character (weighted to ~30 % of names) and every pair.
_GIVEN_NAMES = tuple(list(GIVEN) * (len(GIVEN) * 3 // 7) + [a + b for a in GIVEN for b in GIVEN])
_NAME_SPACE = len(SURNAMES) * len(_GIVEN_NAMES)


def person_name(rng: random.Random) -> str:
    """A plausible Chinese name: one surname and one or two given characters (one draw of ``rng``)."""
    n = rng.randrange(_NAME_SPACE)
    return SURNAMES[n % len(SURNAMES)] + _GIVEN_NAMES[n // len(SURNAMES)]


@dataclass(frozen=True, slots=True)
class PeopleReport:
    persons: int
    assignments: int
    vacant_positions: int
    multi_position_persons: int
    version: int


async def generate_people(
    db: Database,
    *,
    persons_target: int | None = None,
    pool_size: int = 3,
    seed: int = 1,
    vacancy_rate: float = 0.01,
    deputy_rate: float = 0.05,
    multi_share: float = 0.5,
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> PeopleReport:
    """Create persons and assignments for every position that has no current holder.

    Args:
        persons_target: approximate number of persons to create; pools (兼职网格员)
            grow to reach it. ``None`` gives each pool ``pool_size`` members.
        seed: same seed and tree → same people.
        vacancy_rate: share of single positions left vacant.
        deputy_rate: share of single positions that also get a deputy.
        multi_share: share of village 河长/村妇联执委 positions held by one of the
            village's full-time grid workers (who then hold 2–3 positions).
    """
    clock = clock or SystemClock()
    rng = random.Random(seed)  # noqa: S311  (reproducible demo data, not secrets)
    now = clock.now()
    report_progress = progress or (lambda _s, _d, _t: None)
    async with db.write() as conn:
        await lift_statement_timeout(conn)
        rows = await _open_positions(conn)
        next_person = await next_id(conn, persons)
        next_assignment = await next_id(conn, assignments)
        person_rows: list[tuple[object, ...]] = []
        assignment_rows: list[tuple[object, ...]] = []

        def new_person() -> int:
            nonlocal next_person
            pid = next_person
            next_person += 1
            person_rows.append((pid, None, person_name(rng), None, False, now))
            return pid

        def assign(person_id: int, position_id: int, kind: str) -> None:
            nonlocal next_assignment
            assignment_rows.append((next_assignment, person_id, position_id, kind, now, None))
            next_assignment += 1

        pools = [r for r in rows if r[3]]
        singles = [r for r in rows if not r[3] and r[2] not in _MULTI_ROLES]
        shared = [r for r in rows if not r[3] and r[2] in _MULTI_ROLES]
        workers_of_village: dict[int, list[int]] = {}
        vacant = 0
        for i, (pos_id, _unit_id, role_key, _pool, parent_id) in enumerate(singles):
            if rng.random() < vacancy_rate:
                vacant += 1
            else:
                holder = new_person()
                assign(holder, pos_id, "primary")
                if role_key == "grid_worker" and parent_id is not None:
                    workers_of_village.setdefault(parent_id, []).append(holder)
            if rng.random() < deputy_rate:
                assign(new_person(), pos_id, "deputy")
            if i % 100_000 == 0:
                report_progress("people", i, len(rows))
        multi: set[int] = set()
        for pos_id, unit_id, _role_key, _pool, _parent in shared:
            workers = workers_of_village.get(unit_id)
            if workers and rng.random() < multi_share:
                holder = rng.choice(workers)
                multi.add(holder)
            else:
                holder = new_person()
            assign(holder, pos_id, "primary")
        extra = max(0, (persons_target or 0) - len(person_rows))
        per_pool = extra // len(pools) if persons_target is not None and pools else pool_size
        remainder = extra - per_pool * len(pools) if persons_target is not None and pools else 0
        for j, (pos_id, *_rest) in enumerate(pools):
            for _ in range(per_pool + (1 if j < remainder else 0)):
                assign(new_person(), pos_id, "primary")
        report_progress("people", len(rows), len(rows))
        await bulk_insert(
            conn, persons, ("id", "login", "name", "password_hash", "disabled", "created_at"), person_rows
        )
        await bulk_insert(
            conn, assignments, ("id", "person_id", "position_id", "kind", "start_at", "end_at"), assignment_rows
        )
        await sync_sequence(conn, persons)
        await sync_sequence(conn, assignments)
        version = await bump_version(conn, clock, scope="tree", detail="synthetic people")
    logger.info("synthetic people: %d persons, %d assignments", len(person_rows), len(assignment_rows))
    return PeopleReport(len(person_rows), len(assignment_rows), vacant, len(multi), version)


async def _open_positions(conn: AsyncConnection) -> list[tuple[int, int, str, bool, int | None]]:
    """Live positions without a current assignment: (position, unit, role key, pool, unit's parent)."""
    held = select(assignments.c.position_id).where(assignments.c.end_at.is_(None))
    stmt = (
        select(positions.c.id, positions.c.unit_id, roles.c.key, positions.c.pool, units.c.parent_id)
        .join(roles, roles.c.id == positions.c.role_id)
        .join(units, units.c.id == positions.c.unit_id)
        .where(positions.c.removed_at.is_(None), units.c.dissolved_at.is_(None), positions.c.id.not_in(held))
        .order_by(positions.c.id)
    )
    return [
        (int(a), int(b), str(c), bool(d), int(e) if e is not None else None)
        for a, b, c, d, e in (await conn.execute(stmt)).all()
    ]
