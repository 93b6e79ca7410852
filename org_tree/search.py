"""找岗位: the directory search for positions by role, unit (name, pinyin, initials) and holder name.

Why in memory and built on big strings: at province scale there are 100 k
units and over a million holders. Each searchable field is kept as one
newline-joined string, so finding a term is ``str.find`` in C rather than a
Python loop over rows; offsets map back to units or holder entries by
bisection. Terms are ANDed; a term matches a position through its role, its
unit or any unit above it, or one of its current holders. So ``衢江区 水务``
finds the water-affairs position of 衢江区, and ``kcq 网格长`` every grid chief
under 柯城区. Terms are literal text (``%`` and ``_`` mean themselves).
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_right
from dataclasses import dataclass

from kernel.db.database import Database
from kernel.errors import BadRequest
from org_tree.bulk import fetch_rows, lift_statement_timeout
from org_tree.index import OrgIndex
from org_tree.resolution import Ranges, _normalize, _subtract

logger = logging.getLogger(__name__)

__all__ = ["DirectoryHit", "DirectoryPage", "DirectorySearch"]

MAX_QUERY = 100
MAX_TERMS = 5
MAX_LIMIT = 100
_BISECT_UNITS = 200


@dataclass(frozen=True, slots=True)
class DirectoryHit:
    position_id: int
    role: str
    unit_id: int
    unit_code: str
    unit_path: tuple[str, ...]
    holders: tuple[str, ...]  # names of current primary holders (empty: vacant)


@dataclass(frozen=True, slots=True)
class DirectoryPage:
    total: int
    offset: int
    hits: tuple[DirectoryHit, ...]


class _Haystack:
    """Lines joined into one string; ``find_all(term)`` → line numbers containing the term."""

    def __init__(self, lines: list[str]) -> None:
        self.text = "\n".join(lines) + "\n"
        starts = array("q", [0])
        pos = 0
        for line in lines:
            pos += len(line) + 1
            starts.append(pos)
        self.starts = starts

    def find_all(self, term: str) -> list[int]:
        out: list[int] = []
        text, starts = self.text, self.starts
        i = text.find(term)
        while i >= 0:
            line = bisect_right(starts, i) - 1
            out.append(line)
            i = text.find(term, starts[line + 1])  # next line: one hit per line is enough
        return out


class DirectorySearch:
    """A search index over one ``OrgIndex`` snapshot (rebuild it when the index version changes)."""

    def __init__(self, index: OrgIndex, unit_pinyin: dict[int, tuple[str, str]], person_names: dict[int, str]) -> None:
        self.index = index
        self.version = index.version
        self._handles = list(index.units())
        self._units = _Haystack(
            [
                f"{index.unit_name(u)}\t{unit_pinyin.get(index.unit_id(u), ('', ''))[0]}\t"
                f"{unit_pinyin.get(index.unit_id(u), ('', ''))[1]}"
                for u in self._handles
            ]
        )
        self._person_names = person_names
        self._slots = list(index.slots())
        self._holders = _Haystack(
            ["\v".join(person_names.get(p, "") for p in index.primary_holders(k)) for k in self._slots]
        )

    @classmethod
    async def load(cls, db: Database, index: OrgIndex) -> DirectorySearch:
        """Read unit pinyin and holder names, then build."""
        async with db.read() as conn:
            await lift_statement_timeout(conn)
            rows = await fetch_rows(conn, "SELECT id, pinyin, pinyin_initials FROM units WHERE dissolved_at IS NULL")
            names = await fetch_rows(
                conn,
                "SELECT p.id, p.name FROM persons p WHERE p.id IN "
                "(SELECT person_id FROM assignments WHERE end_at IS NULL)",
            )
        return cls(index, {int(r[0]): (str(r[1]), str(r[2])) for r in rows}, {int(r[0]): str(r[1]) for r in names})

    def _term_ranges(self, term: str) -> Ranges:
        idx = self.index
        ranges: list[tuple[int, int]] = []
        folded = term.lower()
        for rid, role in idx.roles.items():
            if term in role.name or folded in role.key:
                ranges.extend(idx.role_everywhere(rid))
        tops = [self._handles[i] for i in self._units.find_all(folded)]
        for u in tops:
            ranges.extend(idx.role_under_all(u))
        for line in self._holders.find_all(term):
            k = self._slots[line]
            ranges.append((k, k + 1))
        return _normalize(ranges)

    def search(self, query: str, *, offset: int = 0, limit: int = 20) -> DirectoryPage:
        """Find positions matching every term of ``query``.

        Raises:
            BadRequest: empty or over-long query, or bad paging.
        """
        terms = query.split()
        if not terms or len(query) > MAX_QUERY or len(terms) > MAX_TERMS:
            raise BadRequest(f"query must have 1..{MAX_TERMS} terms and at most {MAX_QUERY} characters")
        if offset < 0 or not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"offset must be ≥ 0 and limit within 1..{MAX_LIMIT}")
        ranges = self._term_ranges(terms[0])
        for term in terms[1:]:
            if not ranges:
                break
            other = self._term_ranges(term)
            ranges = _subtract(ranges, _subtract(ranges, other))
        total = sum(b - a for a, b in ranges)
        hits: list[DirectoryHit] = []
        skip = offset
        for a, b in ranges:
            if skip >= b - a:
                skip -= b - a
                continue
            for k in range(a + skip, b):
                if len(hits) >= limit:
                    break
                hits.append(self._hit(k))
            skip = 0
            if len(hits) >= limit:
                break
        return DirectoryPage(total, offset, tuple(hits))

    def _hit(self, k: int) -> DirectoryHit:
        idx = self.index
        u = idx.position_unit(k)
        role = idx.position_role(k)
        names = tuple(self._person_names.get(p, "") for p in idx.primary_holders(k))
        return DirectoryHit(
            position_id=idx.position_id(k),
            role=role.name,
            unit_id=idx.unit_id(u),
            unit_code=idx.unit_code(u),
            unit_path=tuple(idx.unit_path(u)),
            holders=names,
        )
