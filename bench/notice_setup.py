"""Database preparation for the notice fan-out benchmark (orchestrator only, before any server starts).

The Zhejiang tree with synthetic holders (or one city of it for ``--quick``),
the sender seated in the province's head position, and login sessions plus
tokens for the sampled recipients, written in bulk so setup stays a small
part of a run.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import ROOT, Client, mint_token

# --- database preparation (orchestrator only, before any server starts) ---------------


async def prepare(url: str, args: argparse.Namespace) -> tuple[dict[str, Any], Client, int, list[Client]]:
    """Import Zhejiang + people, seat/find the sender, pick recipients, seed their sessions."""
    from sqlalchemy import func, select

    from kernel.db.database import Database
    from kernel.schema import persons
    from org_tree.importer import import_divisions
    from org_tree.org_schema import assignments, positions, roles, units
    from org_tree.synthetic import generate_people

    zhejiang = ROOT / "org_tree" / "data" / "divisions" / "zhejiang"
    if args.quick:  # smoke run: only the city that holds the addressed county
        zhejiang = one_city(zhejiang, args.unit[:4], Path(args.tmp))
    db = Database(url, statement_timeout_ms=600_000)
    info: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        await import_divisions(db, zhejiang)
        t1 = time.perf_counter()
        rep = await generate_people(db, persons_target=args.persons)
        t2 = time.perf_counter()
        info.update(import_s=t1 - t0, people_s=t2 - t1, persons=rep.persons)
        role_keys = args.roles.split(",")
        async with db.write() as conn:
            gov = (
                await conn.execute(
                    select(positions.c.id)
                    .join(roles, roles.c.id == positions.c.role_id)
                    .join(units, units.c.id == positions.c.unit_id)
                    .where(roles.c.key == "governor", units.c.code == "33", positions.c.removed_at.is_(None))
                )
            ).scalar_one()
            holder = (
                await conn.execute(
                    select(assignments.c.person_id).where(
                        assignments.c.position_id == gov,
                        assignments.c.end_at.is_(None),
                        assignments.c.kind == "primary",
                    )
                )
            ).scalar()
            now = datetime.now(UTC)
            if holder is None:  # vacant governor: seat a fresh benchmark person
                holder = int((await conn.execute(select(func.max(persons.c.id)))).scalar() or 0) + 1
                await conn.execute(
                    persons.insert().values(
                        id=holder, login=None, name="Bench Sender", password_hash=None, disabled=False, created_at=now
                    )
                )
                nxt = int((await conn.execute(select(func.max(assignments.c.id)))).scalar() or 0) + 1
                await conn.execute(
                    assignments.insert().values(
                        id=nxt, person_id=holder, position_id=gov, kind="primary", start_at=now, end_at=None
                    )
                )
                info["sender_seated"] = True
            pool = [
                int(r[0])
                for r in await conn.execute(
                    select(assignments.c.person_id)
                    .distinct()
                    .join(positions, positions.c.id == assignments.c.position_id)
                    .join(roles, roles.c.id == positions.c.role_id)
                    .join(units, units.c.id == positions.c.unit_id)
                    .where(
                        assignments.c.end_at.is_(None),
                        assignments.c.kind == "primary",
                        roles.c.key.in_(role_keys),
                        units.c.code.like(f"{args.unit}%"),
                        positions.c.removed_at.is_(None),
                    )
                )
            ]
        pool = sorted(set(pool) - {int(holder)})
        rng = random.Random(4)
        chosen = rng.sample(pool, min(args.clients, len(pool)))
        info.update(sender=int(holder), sender_position=int(gov), holders_addressed=len(pool))
        clients = await seed_sessions(db, [int(holder), *chosen])
        return info, clients[0], int(gov), clients[1:]
    finally:
        await db.dispose()


def one_city(src: Path, city: str, tmp: Path) -> Path:
    """A copy of the division CSVs restricted to one city (for ``--quick``)."""
    dst = tmp / "divisions"
    dst.mkdir(exist_ok=True)
    for f in src.glob("*.csv"):
        lines = f.read_text(encoding="utf-8").splitlines()
        keep = lines if f.name == "provinces.csv" else [lines[0], *(x for x in lines[1:] if x.startswith(city))]
        (dst / f.name).write_text("\n".join(keep) + "\n", encoding="utf-8")
    return dst


async def seed_sessions(db: Any, person_ids: list[int]) -> list[Client]:
    """One login session per person (bulk), and an access token for it."""
    sids = [uuid.uuid4().hex for _ in person_ids]
    now = datetime.now(UTC)
    later = datetime(2099, 1, 1, tzinfo=UTC)
    if db.is_sqlite:
        n, lt = "2026-01-01 00:00:00.000000", "2099-01-01 00:00:00.000000"
        with contextlib.closing(sqlite3.connect(str(db.url.database))) as con:
            con.executemany(
                "INSERT INTO auth_sessions (id, person_id, created_at, expires_at, revoked_at)"
                " VALUES (?, ?, ?, ?, NULL)",
                [(s, p, n, lt) for s, p in zip(sids, person_ids, strict=True)],
            )
            con.commit()
    else:
        async with db.write() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            await raw.copy_records_to_table(
                "auth_sessions",
                records=[(s, p, now, later, None) for s, p in zip(sids, person_ids, strict=True)],
                columns=["id", "person_id", "created_at", "expires_at", "revoked_at"],
            )
    return [Client(p, mint_token(p, s, ttl=7200)) for s, p in zip(sids, person_ids, strict=True)]
