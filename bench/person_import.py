"""Issue 10 item 8: ``zzd person import`` people/s beside bare Argon2 hashing in the same run.

Builds a synthetic tree (1 city, 4 counties × 25 townships × 25 villages, 3 grids each:
10,000 positions of 村书记 and 专职网格员), writes a CSV of ``--count`` persons with one
position each, and times the real command end to end (a process of its own, as an
operator runs it): the first run (creates, seats, one activation code each) and the
second (idempotent: nothing changes). The baseline is what the old way paid per
person before any database work: one Argon2id hash of an operator-chosen password,
at the server's cost (zzd.auth.passwords.default_hasher), ``--hash-count`` times in a row.

    .venv/bin/python bench/person_import.py                     # 10,000 persons, 10,000 hashes (long)
    .venv/bin/python bench/person_import.py --hash-count 200    # hashing rate from a sample
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import subprocess
import tempfile
import time
from pathlib import Path

from zzd.auth.passwords import default_hasher

from common import ROOT, ZZD, migrate, zzd_env

COUNTIES, TOWNSHIPS, VILLAGES = 4, 25, 25


def write_divisions(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "provinces.csv").write_text('code,name\n99,"测试省"\n', encoding="utf-8")
    (folder / "cities.csv").write_text('code,name,provinceCode\n9901,"甲市",99\n', encoding="utf-8")
    areas, streets, vills = (
        ["code,name,cityCode,provinceCode"],
        ["code,name,areaCode,provinceCode,cityCode"],
        ["code,name,streetCode,provinceCode,cityCode,areaCode"],
    )
    for c in range(1, COUNTIES + 1):
        area = f"9901{c:02d}"
        areas.append(f'{area},"县{c}",9901,99')
        for t in range(1, TOWNSHIPS + 1):
            street = f"{area}{t:03d}"
            streets.append(f'{street},"镇{c}-{t}",{area},99,9901')
            vills += [f'{street}{v:03d},"村{c}-{t}-{v}",{street},99,9901,{area}' for v in range(1, VILLAGES + 1)]
    for name, rows in (("areas", areas), ("streets", streets), ("villages", vills)):
        (folder / f"{name}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_people(path: Path, count: int) -> None:
    seats = []
    for c in range(1, COUNTIES + 1):
        for t in range(1, TOWNSHIPS + 1):
            for v in range(1, VILLAGES + 1):
                village = f"9901{c:02d}{t:03d}{v:03d}"
                seats.append(f"{village}:village_secretary")
                seats += [f"{village}{g:03d}:grid_worker" for g in range(1, 4)]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["login", "name", "phone", "positions"])
        for i in range(count):
            w.writerow([f"user{i:06d}", f"干部{i}", f"138{i:08d}", seats[i % len(seats)]])


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, done.stdout.strip().splitlines()[-1]


async def build_tree(url: str, folder: Path) -> None:
    from kernel.db.database import Database
    from org_tree.importer import import_divisions

    db = Database(url)
    try:
        await import_divisions(db, folder, grids_per_village=3)
    finally:
        await db.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--hash-count", type=int, default=None, help="default: --count")
    args = p.parse_args()
    hash_count = args.hash_count or args.count
    print(f"load before: {open('/proc/loadavg').read().split()[:3]}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = f"sqlite+aiosqlite:///{folder / 'zzd.db'}"
        env = zzd_env(url)
        migrate(env)
        write_divisions(folder / "div")
        asyncio.run(build_tree(url, folder / "div"))
        write_people(folder / "people.csv", args.count)
        first, out1 = timed([ZZD, "person", "import", str(folder / "people.csv"), "--no-progress"], env)
        (folder / "people.codes.csv").rename(folder / "sent.csv")
        second, out2 = timed([ZZD, "person", "import", str(folder / "people.csv"), "--no-progress"], env)
    hasher = default_hasher()
    t = time.perf_counter()
    for i in range(hash_count):
        hasher.hash(f"operator-chosen-{i}")
    hashing = time.perf_counter() - t
    print(f"\nzzd person import, {args.count} persons (SQLite, one process each run, start-up included)")
    print(f"  first run   {first:7.1f} s   {args.count / first:8.0f} people/s   {out1}")
    print(f"  second run  {second:7.1f} s   {args.count / second:8.0f} people/s   {out2}")
    rate = hash_count / hashing
    print(
        f"bare Argon2id hashing (the server's cost), {hash_count} in a row: {hashing:.1f} s, {rate:.2f} people/s"
        + (f"  (for {args.count}: {args.count / rate:.0f} s)" if hash_count != args.count else "")
    )
    print(f"import / bare hashing: {args.count / first / rate:.0f}x")
    print(f"load after: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
