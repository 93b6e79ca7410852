"""The 找岗位 directory's data: names, pinyin and initials of units, roles and holders, kept live.

Why this shape (issue 18): at national scale there are 2.5 M units and 7.9 M
persons but far fewer *distinct* names (第1网格 repeats 620 k times, given
names repeat too). Each distinct name is stored once, with its toneless pinyin
and initials, in three newline-joined strings searched with ``str.find`` (C
speed over a few MiB); a name id maps to the units or persons that carry it.
Persons map to the positions they hold. Nothing is per-person Python objects:
ids live in ``array`` columns.

Live: ``org_tree.holder`` tells the directory what every refresh applied
(``Applied``): new and renamed units add a name, holder changes add the new
holders' names (read for the few persons it does not know yet) and their
positions, a person's new name re-points them. Entries are never removed on
the fly: a stale "person → position" pair is filtered when searched (the
index says who holds what now). New names go to a small side list that is
folded into the big strings when it grows past ``_FOLD``.
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_right
from itertools import accumulate
from typing import Any

from pypinyin import Style, lazy_pinyin

from kernel.db.database import Database
from org_tree.bulk import fetch_rows, lift_statement_timeout
from org_tree.index import OrgIndex

logger = logging.getLogger(__name__)

__all__ = ["Directory", "Names", "pinyin_fast"]

_FOLD = 2_000
_CHAR_PINYIN: dict[str, str] = {}


def pinyin_fast(name: str) -> tuple[str, str]:
    """Toneless pinyin and initials, character by character (memoised): ``张伟`` → ("zhangwei", "zw")."""
    full, initials = [], []
    for ch in name:
        py = _CHAR_PINYIN.get(ch)
        if py is None:
            py = _CHAR_PINYIN[ch] = "".join(lazy_pinyin(ch, style=Style.NORMAL, errors="default")).lower()
        if py:
            full.append(py)
            initials.append(py[0])
    return "".join(full).replace(" ", ""), "".join(initials)


class Names:
    """Distinct names with their pinyin and initials; ``find(term)`` → (name id, exact) of those containing it."""

    def __init__(self, names: list[str]) -> None:
        self.names: list[str] = []
        self._id: dict[str, int] = {}
        self._pinyin: list[str] = []
        self._initials: list[str] = []
        self._texts: tuple[str, str, str] = ("", "", "")
        self._starts = array("q", [0])
        self._folded = 0
        for n in names:
            self.add(n)
        self._fold()

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str) -> int:
        nid = self._id.get(name)
        if nid is None:
            nid = self._id[name] = len(self.names)
            self.names.append(name)
            full, initials = pinyin_fast(name)
            self._pinyin.append(full)
            self._initials.append(initials)
            if len(self.names) - self._folded > _FOLD:
                self._fold()
        return nid

    def _fold(self) -> None:
        n = len(self.names)
        self._texts = tuple("\n".join(col) + "\n" for col in (self.names, self._pinyin, self._initials))  # type: ignore[assignment]
        self._starts = array("q", accumulate((len(s) + 1 for s in self.names), initial=0))
        self._pstarts = array("q", accumulate((len(s) + 1 for s in self._pinyin), initial=0))
        self._istarts = array("q", accumulate((len(s) + 1 for s in self._initials), initial=0))
        self._folded = n

    def find(self, term: str, cap: int) -> list[tuple[int, bool]]:
        """Ids of names whose characters, pinyin or initials contain ``term`` (exact ones flagged), at most ``cap``."""
        out: dict[int, bool] = {}
        folded = term.lower()
        for text, starts, col, t in (
            (self._texts[0], self._starts, self.names, term),
            (self._texts[1], self._pstarts, self._pinyin, folded),
            (self._texts[2], self._istarts, self._initials, folded),
        ):
            if t != term and not t.isascii():
                continue
            i = text.find(t)
            while i >= 0 and len(out) < cap:
                line = bisect_right(starts, i) - 1
                out[line] = out.get(line, False) or col[line] == t
                i = text.find(t, starts[line + 1])
            for nid in range(self._folded, len(self.names)):  # names added since the last fold
                if t in col[nid] and len(out) < cap:
                    out[nid] = out.get(nid, False) or col[nid] == t
        return sorted(out.items(), key=lambda kv: (not kv[1], kv[0]))

    def memory_bytes(self) -> int:
        import sys

        text = sum(sys.getsizeof(t) for t in self._texts)
        lists = sum(
            sys.getsizeof(c) + sum(sys.getsizeof(s) for s in c) for c in (self.names, self._pinyin, self._initials)
        )
        return text + lists + sys.getsizeof(self._id) + 3 * len(self._starts) * 8


class Directory:
    """Units by name, persons by name, persons → positions; patched by the org change log."""

    def __init__(self, index: OrgIndex) -> None:
        self.version = index.version
        self.unit_names = Names([])
        self._unit_name_of = array("i")  # unit handle → name id
        self._units_by_name: dict[int, list[int]] = {}
        self.person_names = Names([])
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
            names = await fetch_rows(
                conn,
                "SELECT p.id, p.name FROM persons p WHERE p.id IN "
                "(SELECT person_id FROM assignments WHERE end_at IS NULL)",
            )
            held = await fetch_rows(conn, "SELECT person_id, position_id FROM assignments WHERE end_at IS NULL")
        d = cls(index)
        d._build_units(index)
        d._build_persons(names, held)
        return d

    def _build_units(self, index: OrgIndex) -> None:
        n = len(index._u_name)
        by_name: dict[str, int] = {}
        distinct: list[str] = []
        ids = array("i", [-1]) * n
        for u in index.units():
            name = index.unit_name(u)
            nid = by_name.get(name)
            if nid is None:
                nid = by_name[name] = len(distinct)
                distinct.append(name)
            ids[u] = nid
        self.unit_names = Names(distinct)
        self._unit_name_of = ids
        groups: dict[int, list[int]] = {}
        for u in index.units():
            groups.setdefault(ids[u], []).append(u)
        self._units_by_name = groups

    def _build_persons(self, names: list[Any], held: list[Any]) -> None:
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
        self.person_names = Names(order)
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

    def persons_named(self, nid: int) -> list[int]:
        over = self._persons_over.get(nid)
        if over is not None:
            return over
        if nid + 1 < len(self._persons_off):
            return list(self._persons[self._persons_off[nid] : self._persons_off[nid + 1]])
        return []

    def positions_of(self, person: int) -> list[int]:
        """Positions the person held at some point since the build (stale ones: the caller checks the index)."""
        over = self._pos_over.get(person)
        if over is not None:
            return over
        if person + 1 < len(self._pos_off):
            return list(self._pos[self._pos_off[person] : self._pos_off[person + 1]])
        return []

    def person_name(self, person: int) -> str:
        nid = self._person_name_of[person] if 0 <= person < len(self._person_name_of) else -1
        return self.person_names.names[nid] if nid >= 0 else ""

    def knows(self, person: int) -> bool:
        return 0 <= person < len(self._person_name_of) and self._person_name_of[person] >= 0

    # ---------------------------------------------------------------- patches
    def set_unit_name(self, u: int, name: str) -> None:
        if u >= len(self._unit_name_of):
            self._unit_name_of.extend(array("i", [-1]) * (u + 1 - len(self._unit_name_of)))
        old = self._unit_name_of[u]
        if old >= 0:
            self._units_by_name[old] = [v for v in self._units_by_name.get(old, []) if v != u]
        nid = self.unit_names.add(name)
        self._unit_name_of[u] = nid
        self._units_by_name.setdefault(nid, []).append(u)

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
