"""The 找岗位 directory's data: names, pinyin and initials of units, roles and holders, kept live.

Why this shape (issue 18): at national scale there are 2.5 M units and 7.9 M
persons but far fewer *distinct* names (第1网格 repeats 620 k times, given
names repeat too). Each distinct name is stored once, with its toneless pinyin
and initials, in ``org_tree.name_index.Names`` (n-gram postings: a term costs
the names that share its rarest gram, not a pass over all of them); a name id
maps to the units or persons that carry it.
Persons map to the positions they hold. Nothing is per-person Python objects:
ids live in ``array`` columns.

Live: ``org_tree.holder`` tells the directory what every refresh applied
(``Applied``): new and renamed units add a name, holder changes add the new
holders' names (read for the few persons it does not know yet) and their
positions, a person's new name re-points them. Entries are never removed on
the fly: a stale "person → position" pair is filtered when searched (the
index says who holds what now). A new name appends to the postings.
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

from kernel.db.database import Database
from org_tree.bulk import fetch_columns, lift_statement_timeout
from org_tree.index import OrgIndex, UnitColumns
from org_tree.index_base import csr_row
from org_tree.name_index import Names, pinyin_fast

logger = logging.getLogger(__name__)

__all__ = ["FETCH_CHUNK", "Directory", "Names", "pinyin_fast"]

#: Rows per fetch of the build's reads. Why not the bulk default (100 k): the rows are decoded in
#: the event loop, a chunk at a time, and 100 k rows held a Hunan-size process ~85 ms per chunk.
FETCH_CHUNK = 10_000


class Directory:
    """Units by name, persons by name, persons → positions; patched by the org change log."""

    def __init__(self, index: OrgIndex) -> None:
        self.version = index.version
        self.unit_names = Names([], phrases=True)
        self._unit_name_of = array("i")  # unit handle → name id
        self._units_by_name: dict[int, list[int]] = {}
        self._name_levels = bytearray()  # unit name id → bit mask of the levels of units that carried it
        self.person_names = Names([], surnames=True)
        self._person_name_of = array("i")  # person id → name id, -1 unknown
        self._persons_off = array("q")  # name id → persons: persons[off[n]:off[n+1]] (at build)
        self._persons = array("q")
        self._persons_over: dict[int, list[int]] = {}  # name id → persons, when changed since the build
        self._pos_off = array("q")  # person id → positions held at build: pos[off[p]:off[p+1]]
        self._pos = array("q")
        self._pos_over: dict[int, list[int]] = {}

    # ------------------------------------------------------------------ build
    @classmethod
    async def load(cls, db: Database, index: OrgIndex) -> Directory:
        """Read holders' names and current assignments, then build (unit names come from the index)."""
        async with db.read() as conn:
            await lift_statement_timeout(conn)
            # Streamed into columns (org_tree.bulk.fetch_columns): 7.9 M (id, name) rows as objects
            # were the directory load's peak at national scale.
            names = await fetch_columns(
                conn,
                "SELECT p.id, p.name FROM persons p WHERE p.id IN "
                "(SELECT person_id FROM assignments WHERE end_at IS NULL)",
                "qO",
                chunk=FETCH_CHUNK,
            )
            held = await fetch_columns(
                conn, "SELECT person_id, position_id FROM assignments WHERE end_at IS NULL", "qq", chunk=FETCH_CHUNK
            )
        # A copy of the index's unit columns, taken here in the loop between its patches: the
        # thread below reads nothing the loop may change meanwhile (a patch applied during the
        # build is queued by ``DirectoryService`` and applied to the result after).
        units = index.unit_columns()
        d = cls(index)
        # All of the build reads only these copies and writes only ``d``, nobody's yet: a thread, so
        # the process serves meanwhile (in the loop the units' part held a Hunan-size process ~1 s,
        # the persons' part 5 s; the national tree's build takes minutes).
        await asyncio.to_thread(d._build, units, names, held)
        return d

    def _build(self, units: UnitColumns, names: Sequence[Sequence[Any]], held: Sequence[Sequence[Any]]) -> None:
        self._build_units(units)
        self._build_persons(names, held)

    def _build_units(self, units: UnitColumns) -> None:
        unit_name, unit_level, dead = units
        n = len(unit_name)
        live = [u for u in range(n) if not dead[u]]
        by_name: dict[str, int] = {}
        distinct: list[str] = []
        ids = array("i", [-1]) * n
        for u in live:
            name = unit_name[u]
            nid = by_name.get(name)
            if nid is None:
                nid = by_name[name] = len(distinct)
                distinct.append(name)
            ids[u] = nid
        self.unit_names = Names(distinct, phrases=True)
        self._unit_name_of = ids
        groups: dict[int, list[int]] = {}
        levels = bytearray(len(distinct))
        for u in live:
            groups.setdefault(ids[u], []).append(u)
            levels[ids[u]] |= 1 << unit_level[u]
        self._units_by_name = groups
        self._name_levels = levels

    def _build_persons(self, names: Sequence[Sequence[Any]], held: Sequence[Sequence[Any]]) -> None:
        max_person = max((int(r[0]) for r in names), default=0)
        of = array("i", [-1]) * (max_person + 1)
        distinct: dict[str, int] = {}
        order: list[str] = []
        for pid, name in names:
            nid = distinct.get(name)
            if nid is None:
                nid = distinct[name] = len(order)
                order.append(str(name))
            of[pid] = nid
        self.person_names = Names(order, surnames=True)
        self._person_name_of = of
        count = array("q", [0]) * (len(order) + 1)
        for pid, _name in names:
            count[of[pid] + 1] += 1
        self._persons_off = array("q", accumulate(count))
        fill = array("q", self._persons_off[:-1])
        self._persons = array("q", [0]) * len(names)
        for pid, _name in names:
            nid = of[pid]
            self._persons[fill[nid]] = pid
            fill[nid] += 1
        pcount = array("q", [0]) * (max_person + 2)
        for person, _pos in held:
            if person <= max_person:
                pcount[person + 1] += 1
        self._pos_off = array("q", accumulate(pcount))
        pfill = array("q", self._pos_off[:-1])
        self._pos = array("q", [0]) * self._pos_off[-1]
        for person, pos in held:
            if person <= max_person:
                self._pos[pfill[person]] = pos
                pfill[person] += 1

    # ---------------------------------------------------------------- lookups
    def units_named(self, nid: int) -> list[int]:
        return self._units_by_name.get(nid, [])

    def unit_name_levels(self, nid: int) -> int:
        """Bit ``1 << level`` for every level a unit of this name has had (may over-state, never under)."""
        return self._name_levels[nid] if nid < len(self._name_levels) else 0

    def persons_named(self, nid: int) -> list[int]:
        return csr_row(self._persons, self._persons_off, self._persons_over, nid)

    def persons_count(self, nid: int) -> int:
        """How many persons carry name ``nid`` (``len(persons_named(nid))`` without the list)."""
        over = self._persons_over.get(nid)
        if over is not None:
            return len(over)
        if nid + 1 < len(self._persons_off):
            return int(self._persons_off[nid + 1] - self._persons_off[nid])
        return 0

    def positions_of(self, person: int) -> list[int]:
        """Positions the person held at some point since the build (stale ones: the caller checks the index)."""
        return csr_row(self._pos, self._pos_off, self._pos_over, person)

    def person_name(self, person: int) -> str:
        nid = self.person_name_id(person)
        return self.person_names.names[nid] if nid >= 0 else ""

    def person_name_id(self, person: int) -> int:
        """The id of the person's name in ``person_names``, -1 when unknown."""
        return self._person_name_of[person] if 0 <= person < len(self._person_name_of) else -1

    def unit_name_id(self, u: int) -> int:
        """The id of the unit's name in ``unit_names``, -1 when unknown."""
        return self._unit_name_of[u] if 0 <= u < len(self._unit_name_of) else -1

    def knows(self, person: int) -> bool:
        return 0 <= person < len(self._person_name_of) and self._person_name_of[person] >= 0

    # ---------------------------------------------------------------- patches
    def set_unit_name(self, u: int, name: str, level: int) -> None:
        if u >= len(self._unit_name_of):
            self._unit_name_of.extend(array("i", [-1]) * (u + 1 - len(self._unit_name_of)))
        old = self._unit_name_of[u]
        if old >= 0:
            self._units_by_name[old] = [v for v in self._units_by_name.get(old, []) if v != u]
        nid = self.unit_names.add(name)
        self._unit_name_of[u] = nid
        self._units_by_name.setdefault(nid, []).append(u)
        if nid >= len(self._name_levels):
            self._name_levels.extend(bytes(nid + 1 - len(self._name_levels)))
        self._name_levels[nid] |= 1 << level

    def set_person_name(self, person: int, name: str) -> None:
        if person >= len(self._person_name_of):
            self._person_name_of.extend(array("i", [-1]) * (person + 1 - len(self._person_name_of)))
        old = self._person_name_of[person]
        if old >= 0:
            self._persons_over[old] = [p for p in self.persons_named(old) if p != person]
        nid = self.person_names.add(name)
        self._person_name_of[person] = nid
        current = self.persons_named(nid)
        if person not in current:
            self._persons_over[nid] = [*current, person]

    def add_holding(self, person: int, position: int) -> None:
        current = self.positions_of(person)
        if position not in current:
            self._pos_over[person] = [*current, position]

    def memory_bytes(self) -> int:
        import sys

        total = self.unit_names.memory_bytes() + self.person_names.memory_bytes()
        for col in (self._unit_name_of, self._person_name_of, self._persons_off, self._persons, self._pos_off,
                    self._pos):  # fmt: skip
            total += col.itemsize * len(col)
        total += sys.getsizeof(self._units_by_name) + sum(
            sys.getsizeof(v) + 28 * len(v) for v in self._units_by_name.values()
        )
        return total
