"""找岗位: finding positions by role, unit or holder — in characters, pinyin or initials — ranked.

How a query is answered (docs/directory.md has the examples):

* The query is split on white space into at most ``MAX_TERMS`` terms; every
  term must match (AND). A term matches a position through its **role**
  (name, key, pinyin, initials: ``网格员``, ``grid_worker``, ``wanggeyuan``,
  ``wgy``), its **unit or any unit above it** (name, pinyin, initials, or an
  exact code: ``柯城区``, ``kechengqu``, ``kcq``, ``330802``), or one of its
  current **holders** (name, pinyin, initials: ``张三``, ``zhangsan``, ``zs``).
* Each term gives *keyed slot ranges*: a range of positions with a rank key
  ``(inexact, depth, level)``. ``inexact`` is 0 when the term equals the
  matched name (or code) exactly; ``depth`` is how far below the matched unit
  the position's unit is (0: the unit's own positions); ``level`` is the
  position's level (province first). Terms combine by intersecting ranges and
  adding their keys, so exact matches come first, then a unit's own
  positions before its subtree's, then higher levels, then tree order.
* Work per query is bounded: at most ``UNIT_CAP`` matched units and
  ``PERSON_CAP`` matched persons per term are expanded (``truncated`` says so),
  and each expansion is a handful of bisections over the index's segments.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass

from kernel.errors import BadRequest
from org_tree.directory import Directory, pinyin_fast
from org_tree.index import OrgIndex

logger = logging.getLogger(__name__)

__all__ = ["MAX_LIMIT", "DirectoryHit", "DirectoryPage", "Fallback", "Holder", "search"]

MAX_QUERY = 100
MAX_TERMS = 5
MAX_LIMIT = 100
UNIT_CAP = 300
PERSON_CAP = 2_000
_NAME_CAP = 500

Key = tuple[int, int, int]  # (inexact, depth below the matched unit, level)
Piece = tuple[int, int, Key]  # [start, end) slots with one key


@dataclass(frozen=True, slots=True)
class Holder:
    person_id: int
    name: str
    phone: str | None = None  # only for administrators of the position's unit (docs/directory.md)


@dataclass(frozen=True, slots=True)
class Fallback:
    """Who receives for a vacant position (``org_tree.resolution``'s vacancy policy)."""

    reason: str  # deputy | acting | unit_head | superior | unfilled
    via_position_id: int | None
    holders: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DirectoryHit:
    position_id: int
    role: str
    role_key: str
    unit_id: int
    unit_code: str
    unit_path: tuple[str, ...]
    holders: tuple[str, ...]  # names of current primary holders (empty: vacant)
    holder_details: tuple[Holder, ...]
    vacant: bool
    fallback: Fallback | None


@dataclass(frozen=True, slots=True)
class DirectoryPage:
    total: int
    offset: int
    hits: tuple[DirectoryHit, ...]
    truncated: bool = False  # a term matched more units or persons than are expanded


def _union(pieces: list[Piece]) -> list[Piece]:
    """Disjoint pieces covering the same slots, each slot with its smallest key."""
    if not pieces:
        return []
    pieces.sort()
    bounds = sorted({p[0] for p in pieces} | {p[1] for p in pieces})
    out: list[Piece] = []
    heap: list[tuple[Key, int]] = []  # (key, end)
    i = 0
    for x, y in zip(bounds, bounds[1:], strict=False):
        while i < len(pieces) and pieces[i][0] <= x:
            heapq.heappush(heap, (pieces[i][2], pieces[i][1]))
            i += 1
        while heap and heap[0][1] <= x:
            heapq.heappop(heap)
        if not heap:
            continue
        live = [h for h in heap if h[1] > x]
        key = min(h[0] for h in live)
        if out and out[-1][1] == x and out[-1][2] == key:
            out[-1] = (out[-1][0], y, key)
        else:
            out.append((x, y, key))
    return out


def _intersect(a: list[Piece], b: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            ka, kb = a[i][2], b[j][2]
            out.append((lo, hi, (ka[0] + kb[0], max(ka[1], kb[1]), max(ka[2], kb[2]))))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


class _Query:
    def __init__(self, index: OrgIndex, directory: Directory) -> None:
        self.idx = index
        self.d = directory
        self.truncated = False

    def term(self, term: str) -> list[Piece]:
        pieces = self._roles(term) + self._units(term) + self._holders(term)
        return _union(pieces)

    def _roles(self, term: str) -> list[Piece]:
        idx, folded = self.idx, term.lower()
        out: list[Piece] = []
        for rid, role in idx.roles.items():
            full, initials = pinyin_fast(role.name)
            fields = (role.name, role.key, full, initials)
            if not any(term in f or folded in f for f in fields):
                continue
            inexact = 0 if term in fields or folded in fields else 1
            for a, b, level in idx.role_pieces(rid):
                out.append((a, b, (inexact, 0, level)))
        return out

    def _units(self, term: str) -> list[Piece]:
        idx = self.idx
        picked: list[tuple[int, int]] = []  # (inexact, unit)
        if term.isdigit():
            u = idx.find_unit_code(term)
            if u >= 0:
                picked.append((0, u))
        else:
            for nid, exact in self.d.unit_names.find(term, _NAME_CAP):
                for u in self.d.units_named(nid):
                    picked.append((0 if exact else 1, u))
        picked.sort(key=lambda e: (e[0], idx.unit_level(e[1])))
        taken: set[int] = set()
        out: list[Piece] = []
        for inexact, u in picked:
            if u in taken or any(a in taken for a in idx.ancestors(u)):
                continue
            if len(taken) >= UNIT_CAP:
                self.truncated = True
                break
            taken.add(u)
            top = idx.unit_level(u)
            for a, b, level in idx.subtree_pieces(u):
                out.append((a, b, (inexact, level - top, level)))
        return out

    def _holders(self, term: str) -> list[Piece]:
        idx, d = self.idx, self.d
        out: list[Piece] = []
        persons = 0
        for nid, exact in d.person_names.find(term, _NAME_CAP):
            for person in d.persons_named(nid):
                persons += 1
                if persons > PERSON_CAP:
                    self.truncated = True
                    return out
                for pid in d.positions_of(person):
                    k = idx.find_slot(pid)
                    if k >= 0 and person in idx.current_holders(k):
                        level = idx.unit_level(idx.position_unit(k))
                        out.append((k, k + 1, (0 if exact else 1, 0, level)))
        return out


def search(index: OrgIndex, directory: Directory, query: str, *, offset: int = 0, limit: int = 20) -> tuple[
    int, list[int], bool
]:  # fmt: skip
    """The total, the slots of one page in rank order, and whether a term was truncated.

    Raises:
        BadRequest: empty or over-long query, or bad paging.
    """
    terms = query.split()
    if not terms or len(query) > MAX_QUERY or len(terms) > MAX_TERMS:
        raise BadRequest(f"query must have 1..{MAX_TERMS} terms and at most {MAX_QUERY} characters",
                         data={"field": "q"})  # fmt: skip
    if offset < 0 or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"offset must be ≥ 0 and limit within 1..{MAX_LIMIT}", data={"field": "limit"})
    q = _Query(index, directory)
    pieces = q.term(terms[0])
    for term in terms[1:]:
        if not pieces:
            break
        pieces = _intersect(pieces, q.term(term))
    total = sum(b - a for a, b, _ in pieces)
    pieces.sort(key=lambda p: (p[2], p[0]))
    page: list[int] = []
    skip = offset
    for a, b, _key in pieces:
        if skip >= b - a:
            skip -= b - a
            continue
        page.extend(range(a + skip, min(b, a + skip + limit - len(page))))
        skip = 0
        if len(page) >= limit:
            break
    return total, page, q.truncated
