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
* Work per query is bounded: at most ``_NAME_CAP`` names, ``UNIT_CAP`` matched
  units and ``PERSON_CAP`` matched persons per term are expanded (``truncated``
  says so), and each expansion is a handful of bisections over the index's
  segments. Terms go narrowest first; once the ranges left hold at most
  ``SCOPE_SLOTS`` positions, a later term is asked of each of them instead
  (``org_tree.search_scope``: same keys, no caps). The page is cut best key
  first (``_best_first``); only the total needs every range.
"""

from __future__ import annotations

import heapq
import logging
from bisect import bisect_right
from dataclasses import dataclass

from kernel.errors import BadRequest
from kernel.text import drop_invisible
from org_tree.directory import Directory, pinyin_fast
from org_tree.index import OrgIndex
from org_tree.name_index import fold
from org_tree.resolution import _normalize
from org_tree.search_scope import ScopedTerm, is_code_term

logger = logging.getLogger(__name__)

__all__ = ["MAX_LIMIT", "DirectoryHit", "DirectoryPage", "Fallback", "Holder", "PlacedPosition", "search"]

MAX_QUERY = 100
MAX_TERMS = 5
MAX_LIMIT = 100
UNIT_CAP = 300
PERSON_CAP = 2_000
_NAME_CAP = 500
SCOPE_SLOTS = 6_000  # a later term is asked slot by slot when earlier ones left at most this many

Key = tuple[int, int, int]  # (inexact, depth below the matched unit, level)
Piece = tuple[int, int, Key]  # [start, end) slots with one key


@dataclass(frozen=True, slots=True)
class Holder:
    person_id: int
    name: str
    phone: str | None = None  # only for administrators of the position's unit (docs/directory.md)
    kind: str = "primary"  # primary | deputy | acting


@dataclass(frozen=True, slots=True)
class Fallback:
    """Who receives for a vacant position (``org_tree.resolution``'s vacancy policy)."""

    reason: str  # deputy | acting | unit_head | superior | unfilled
    via_position_id: int | None
    holders: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlacedPosition:
    """A position with its role and where it is: what a directory hit and a person's positions show."""

    position_id: int
    role: str
    role_key: str
    unit_id: int
    unit_code: str
    unit_path: tuple[str, ...]
    title: str | None  # as the position was created (副书记), else None


@dataclass(frozen=True, slots=True)
class DirectoryHit(PlacedPosition):
    holders: tuple[str, ...]  # names of current primary holders (empty: vacant)
    holder_details: tuple[Holder, ...]  # primary holders first, then deputies and acting holders
    vacant: bool
    fallback: Fallback | None


@dataclass(frozen=True, slots=True)
class DirectoryPage:
    total: int
    offset: int
    hits: tuple[DirectoryHit, ...]
    truncated: bool = False  # a term matched more units or persons than are expanded


def _union(pieces: list[Piece]) -> list[Piece]:
    """Disjoint pieces covering the same slots, each slot with its smallest key (a sweep: O(n log n))."""
    if not pieces:
        return []
    pieces.sort()
    bounds = sorted({p[0] for p in pieces} | {p[1] for p in pieces})
    out: list[Piece] = []
    heap: list[tuple[Key, int]] = []  # (key, end); ended entries below the top are dropped when they surface
    i, n = 0, len(pieces)
    for x, y in zip(bounds, bounds[1:], strict=False):
        while i < n and pieces[i][0] <= x:
            heapq.heappush(heap, (pieces[i][2], pieces[i][1]))
            i += 1
        while heap and heap[0][1] <= x:
            heapq.heappop(heap)
        if not heap:
            continue
        key = heap[0][0]  # the top is live, and no live entry has a smaller key
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
        """The term's pieces, overlapping (a slot's rank is its smallest key among them)."""
        return self._roles(term) + self._units(term) + self._holders(term)

    def role_matches(self, term: str) -> dict[int, int]:
        """Role id → inexact (0: the term is the role's name, key, pinyin or initials) of the roles it matches."""
        folded = term.lower()
        out: dict[int, int] = {}
        for rid, role in self.idx.roles.items():
            full, initials = pinyin_fast(fold(role.name))
            fields = (fold(role.name), role.key, full, initials)
            if any(term in f or folded in f for f in fields):
                out[rid] = 0 if term in fields or folded in fields else 1
        return out

    def _roles(self, term: str) -> list[Piece]:
        out: list[Piece] = []
        for rid, inexact in self.role_matches(term).items():
            for a, b, level in self.idx.role_pieces(rid):
                out.append((a, b, (inexact, 0, level)))
        return out

    def scoped(self, term: str, pieces: list[Piece]) -> list[Piece]:
        """``pieces`` intersected with ``term``, asking each of their slots (``org_tree.search_scope``)."""
        # The term's holders over the whole tree when they are fewer than the slots asked (a rare
        # name): exact unless cut short, and then each slot's holders are asked instead.
        held, cut = self.holder_matches(term, min(PERSON_CAP, sum(b - a for a, b, _ in pieces)), whole=True)
        holders: dict[int, int] | None = None
        if not cut:  # a slot's best holder: exact if any of its holders is
            holders = {}
            for a, _b, key in held:
                holders[a] = min(key[0], holders.get(a, 1))
        st = ScopedTerm(self.idx, self.d, term, self.role_matches(term), holders)
        out: list[Piece] = []
        for a, b, ka in pieces:
            for k in range(a, b):
                kb = st.key(k)
                if kb is None:
                    continue
                key = (ka[0] + kb[0], max(ka[1], kb[1]), max(ka[2], kb[2]))
                if out and out[-1][1] == k and out[-1][2] == key:
                    out[-1] = (out[-1][0], k + 1, key)
                else:
                    out.append((k, k + 1, key))
        return out

    def _units(self, term: str) -> list[Piece]:
        idx, d = self.idx, self.d
        groups: list[tuple[int, int, list[int]]] = []  # (inexact, level mask, units) in name order
        if is_code_term(idx, term):
            u = idx.find_unit_code(term)
            if u >= 0:
                groups.append((0, 1 << idx.unit_level(u), [u]))
        else:
            names = d.unit_names.find(term, _NAME_CAP)
            self.truncated |= len(names) >= _NAME_CAP
            for nid, exact in names:
                groups.append((0 if exact else 1, d.unit_name_levels(nid), d.units_named(nid)))
        taken: set[int] = set()
        out: list[Piece] = []
        # Exact before partial, higher levels first, then name order: level by level, so a name
        # carried by 600 k grids costs the units taken, not a sort of them all.
        for inexact in (0, 1):
            for top in range(1, 7):
                bit = 1 << top
                for ie, mask, units in groups:
                    if ie != inexact or not mask & bit:
                        continue
                    for u in units:
                        if idx.unit_level(u) != top or u in taken or any(a in taken for a in idx.ancestors(u)):
                            continue
                        if len(taken) >= UNIT_CAP:
                            self.truncated = True
                            return out
                        taken.add(u)
                        for a, b, level in idx.subtree_pieces(u):
                            out.append((a, b, (inexact, level - top, level)))
        return out

    def _holders(self, term: str) -> list[Piece]:
        pieces, truncated = self.holder_matches(term)
        self.truncated |= truncated
        return pieces

    def holder_matches(self, term: str, person_cap: int = PERSON_CAP, *, whole: bool = False) -> tuple[
        list[Piece], bool
    ]:  # fmt: skip
        """Slots whose current holder's name matches ``term``, and whether the caps cut them short.

        ``whole``: all of them or none (cut) — counted before any is expanded.
        """
        idx, d = self.idx, self.d
        out: list[Piece] = []
        persons = 0
        names = d.person_names.find(term, _NAME_CAP)
        if whole and (len(names) >= _NAME_CAP or sum(d.persons_count(nid) for nid, _ in names) > person_cap):
            return out, True
        holding = idx.holding_slots
        for nid, exact in names:
            inexact = 0 if exact else 1
            for person in d.persons_named(nid):
                persons += 1
                if persons > person_cap:
                    return out, True
                for k, level in holding(person, d.positions_of(person)):
                    out.append((k, k + 1, (inexact, 0, level)))
        return out, len(names) >= _NAME_CAP


def search(index: OrgIndex, directory: Directory, query: str, *, offset: int = 0, limit: int = 20) -> tuple[
    int, list[int], bool
]:  # fmt: skip
    """The total, the slots of one page in rank order, and whether a term was truncated.

    Raises:
        BadRequest: empty or over-long query, or bad paging.
    """
    if "\x00" in query:  # no name holds one: refused like every text with a NUL, not answered "nothing"
        raise BadRequest("q contains NUL", data={"field": "q"})
    # Full-width letters, digits and spaces as their ASCII forms; zero-width and bidi characters
    # dropped, as stored names never keep them (``normalize_name``): a name pasted with one
    # (``网\u200b格甲``) found nothing (the 湖南 audit). Only the query: the names are clean already.
    terms = fold(drop_invisible(query)).split()
    if not terms or len(query) > MAX_QUERY or len(terms) > MAX_TERMS:
        raise BadRequest(f"query must have 1..{MAX_TERMS} terms and at most {MAX_QUERY} characters",
                         data={"field": "q"})  # fmt: skip
    if offset < 0 or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"offset must be ≥ 0 and limit within 1..{MAX_LIMIT}", data={"field": "limit"})
    q = _Query(index, directory)
    terms.sort(key=lambda t: (t.isascii(), -len(t)))  # likely narrowest first: the others may then be scoped
    pieces = q.term(terms[0])
    for term in terms[1:]:
        if not pieces:
            break
        narrow = _covered(pieces) <= SCOPE_SLOTS
        pieces = q.scoped(term, _union(pieces)) if narrow else _intersect(_union(pieces), _union(q.term(term)))
    return _covered(pieces), _best_first(pieces, offset, limit), q.truncated


def _covered(pieces: list[Piece]) -> int:
    """How many slots the (possibly overlapping) pieces cover: the total."""
    return sum(b - a for a, b in _normalize([(a, b) for a, b, _ in pieces]))


def _best_first(pieces: list[Piece], offset: int, limit: int) -> list[int]:
    """Slots ``offset …`` of the rank order (key, then slot), each slot at its smallest key.

    Keys are taken best first and only until the page is full: a broad term's thousands of
    pieces are sorted, not swept, and a slot already listed under a better key is skipped.
    """
    pieces = sorted(pieces, key=lambda p: (p[2], p[0]))
    seen: list[tuple[int, int]] = []  # slots listed (or skipped over) under better keys
    page: list[int] = []
    skip = offset
    i, n = 0, len(pieces)
    while i < n and len(page) < limit:
        j = i
        while j < n and pieces[j][2] == pieces[i][2]:
            j += 1
        spans = _normalize([(a, b) for a, b, _ in pieces[i:j]])
        for a, b in spans:
            for x, y in _minus(a, b, seen):
                if skip >= y - x:
                    skip -= y - x
                    continue
                page.extend(range(x + skip, min(y, x + skip + limit - len(page))))
                skip = 0
                if len(page) >= limit:
                    return page
        seen = _normalize(seen + spans)
        i = j
    return page


def _minus(a: int, b: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``[a, b)`` outside the sorted, disjoint ``spans``."""
    out: list[tuple[int, int]] = []
    i = max(bisect_right(spans, (a, a)) - 1, 0)
    while a < b and i < len(spans) and spans[i][0] < b:
        x, y = spans[i]
        if y > a:
            if x > a:
                out.append((a, x))
            a = max(a, y)
        i += 1
    if a < b:
        out.append((a, b))
    return out
