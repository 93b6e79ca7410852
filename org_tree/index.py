"""The in-memory, versioned org index every process routes with.

Why: the tree is read millions of times and changed every day, and a notice to
"every 专职网格员 under 柯城区" must resolve in well under a millisecond per
thousand positions. A subtree is an interval of unit labels, and the positions
of one role and level under a unit are one contiguous range of *slots* whose
primary holders are one slice of a holder column. Everything lives in
``array`` columns to keep a national tree (2.5 M units, 8 M positions) within a
few GiB. The layout, and why structural edits stay local, is in
``org_tree.index_base``; the edits themselves in ``org_tree.index_patch``.

Callers outside this package use the look-up methods (``unit``, ``find_slot``,
``holds``, ``contains``, ``child_toward``, ``subtree``, ``position_unit`` …)
and never the columns, which are private. Unit handles and position ids are
stable; slots are valid until the index is next patched, so never keep one
across an ``await``.

Changes: ``org_tree.holder.OrgIndexHolder`` applies the org change log in
order (holders, units, positions, roles) by patching this object in place;
a rebuild is the fallback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate
from typing import Any

from kernel.db.database import Database
from kernel.errors import NotFound
from org_tree.bulk import fetch_columns, fetch_rows, lift_statement_timeout
from org_tree.index_base import RoleInfo
from org_tree.index_patch import IndexPatches
from org_tree.versioning import read_version

logger = logging.getLogger(__name__)

__all__ = ["FETCH_CHUNK", "IndexRows", "OrgIndex", "RoleInfo", "UnitColumns", "role_info"]

#: Every unit handle's name, level and retired flag (1), as ``OrgIndex.unit_columns`` copies them.
UnitColumns = tuple[list[str], bytes, bytes]

#: What ``OrgIndex.fetch`` reads and ``OrgIndex.build`` takes: version, roles, units, positions, holders, titles.
IndexRows = tuple[int, Sequence[Any], Sequence[Any], Sequence[Any], Sequence[Any], Sequence[Any]]

#: Rows per fetch of a load's reads. Why not the bulk default (100 k): the rows are decoded in the
#: event loop a chunk at a time, and a rebuild runs while the process serves (as ``Directory.load``).
FETCH_CHUNK = 10_000

_ID_BITS = 40  # position ids below 2**40
_LAB_BITS = 40
_ROOT_BITS = 24


def role_info(row: Sequence[Any]) -> RoleInfo:
    """A ``RoleInfo`` from ``(id, key, name, levels, jurisdiction, is_head, pool)``."""
    from org_tree.divisions import Level  # local: keeps the import graph flat

    rid, key, name, levels, juris, is_head, pool = row
    lv = tuple(int(Level.parse(x)) for x in str(levels).split(",") if x)
    return RoleInfo(int(rid), str(key), str(name), lv, str(juris), bool(is_head), bool(pool))


class OrgIndex(IndexPatches):
    """A snapshot of the tree at ``version``, patched in place by its holder as the org changes."""

    # ----------------------------------------------------------------- loading
    @classmethod
    async def load(cls, db: Database) -> OrgIndex:
        """Read the whole tree in one read transaction and build the index in a thread.

        Why a thread: the build is pure Python over plain rows (4 s on a province, about a minute on
        the country) and a rebuild happens while the process serves (a division import, a gap in the
        change log): in the loop it stalled every socket of the process for all of it. The thread
        reads only the fetched rows and writes only the new index, nobody's yet.
        """
        rows = await cls.fetch(db)
        return await asyncio.to_thread(cls.build, *rows)

    @classmethod
    async def fetch(cls, db: Database, *, chunk: int = FETCH_CHUNK) -> IndexRows:
        """The rows ``build`` takes, read in one read transaction (a consistent snapshot at ``version``).

        ``chunk``: rows per fetch; they are decoded in the loop, so a small one keeps each step short.
        """
        async with db.read() as conn:
            await lift_statement_timeout(conn)
            version = await read_version(conn)
            role_rows = await fetch_rows(
                conn, "SELECT id, key, name, levels, jurisdiction, is_head, pool FROM roles ORDER BY id"
            )
            # Streamed into compact columns (org_tree.bulk.fetch_columns): a rebuild beside the live
            # index no longer holds every row as objects on top of both indexes.
            unit_rows = await fetch_columns(
                conn,
                "SELECT id, COALESCE(parent_id, -1), level, code, name FROM units WHERE dissolved_at IS NULL "
                "ORDER BY code",
                "qqbOO",
                chunk=chunk,
            )
            pos_rows = await fetch_columns(
                conn,
                "SELECT p.id, p.unit_id, p.role_id FROM positions p JOIN units u ON u.id = p.unit_id "
                "WHERE p.removed_at IS NULL AND u.dissolved_at IS NULL",
                "qqi",
                chunk=chunk,
            )
            holder_rows = await fetch_columns(
                conn, "SELECT position_id, person_id, kind FROM assignments WHERE end_at IS NULL", "qqS", chunk=chunk
            )
            titles = await fetch_columns(
                conn,
                "SELECT id, title FROM positions WHERE title IS NOT NULL AND removed_at IS NULL",
                "qO",
                chunk=chunk,
            )
        return version, role_rows, unit_rows, pos_rows, holder_rows, titles

    @classmethod
    def build(
        cls,
        version: int,
        role_rows: Sequence[Sequence[Any]],
        unit_rows: Sequence[Sequence[Any]],
        pos_rows: Sequence[Sequence[Any]],
        holder_rows: Sequence[Sequence[Any]],
        title_rows: Sequence[Sequence[Any]] = (),
    ) -> OrgIndex:
        """Build from plain rows (also used by tests with hand-made trees); units come ordered by code.

        ``title_rows``: (position id, title) of the positions created with a title (副书记).
        """
        idx = cls(version)
        for row in role_rows:
            idx.set_role(role_info(row))
        idx._build_units(unit_rows)
        idx._build_positions(pos_rows)
        idx._build_holders(holder_rows)
        idx._titles = {int(pid): str(title) for pid, title in title_rows}
        return idx

    def _build_units(self, rows: Sequence[Sequence[Any]]) -> None:
        n = len(rows)
        max_id = max((int(r[0]) for r in rows), default=0)
        row_of_id = array("i", [-1]) * (max_id + 1)
        for i, r in enumerate(rows):
            row_of_id[r[0]] = i
        parent = array("i", [-1]) * n
        for i, r in enumerate(rows):
            p = r[1]  # None or -1: a root
            if p is not None and 0 <= p <= max_id and row_of_id[p] >= 0:
                parent[i] = row_of_id[p]
        # A unit whose parent is dissolved is left out with its subtree: keep only rows reaching a root.
        keep = bytearray(n)
        order: list[int] = []  # rows, parents before children
        pending = [i for i in range(n) if rows[i][1] is None or rows[i][1] < 0]
        kids_of: list[list[int]] = [[] for _ in range(n)]
        for i in range(n):
            if parent[i] >= 0:
                kids_of[parent[i]].append(i)  # rows are ordered by code: children come in code order
        while pending:
            i = pending.pop()
            keep[i] = 1
            order.append(i)
            pending.extend(kids_of[i])
        # handles: kept rows in row (code) order
        handle = array("i", [-1]) * n
        h = 0
        for i in range(n):
            if keep[i]:
                handle[i] = h
                h += 1
        nu = h
        self._u_id = array("q", [0]) * nu
        self._u_parent = array("i", [-1]) * nu
        self._u_level = array("b", [0]) * nu
        self._u_dead = bytearray(nu)
        self._u_code = [""] * nu
        self._u_name = [""] * nu
        for i in range(n):
            u = handle[i]
            if u < 0:
                continue
            r = rows[i]
            self._u_id[u] = r[0]
            self._u_level[u] = r[2]
            self._u_code[u] = str(r[3])
            name = str(r[4])
            self._u_name[u] = sys.intern(name) if name.startswith("第") else name  # 第N网格 repeats
            self._u_parent[u] = handle[parent[i]] if parent[i] >= 0 else -1
        count = array("i", [0]) * (nu + 1)
        for u in range(nu):
            p = self._u_parent[u]
            if p >= 0:
                count[p + 1] += 1
        self._kid_off = array("i", accumulate(count))
        fill = array("i", self._kid_off[:nu])
        self._kid = array("i", [0]) * nu
        for u in range(nu):  # handles are in code order, so children are too
            p = self._u_parent[u]
            if p >= 0:
                self._kid[fill[p]] = u
                fill[p] += 1
        self._u_of_id = array("i", [-1]) * (max_id + 1)
        for u in range(nu):
            self._u_of_id[self._u_id[u]] = u
        self._codes_sorted = list(self._u_code)
        self._codes_u = array("i", range(nu))
        if any(self._codes_sorted[i] > self._codes_sorted[i + 1] for i in range(nu - 1)):
            order_u = sorted(range(nu), key=self._u_code.__getitem__)
            self._codes_sorted = [self._u_code[u] for u in order_u]
            self._codes_u = array("i", order_u)
        self._head_pid = array("q", [0]) * nu
        self._u_lab = array("q", [0]) * nu
        self._u_lab_end = array("q", [0]) * nu
        self._u_free = array("q", [0]) * nu
        self._u_root = array("i", [0]) * nu
        counter = 0
        for root in (u for u in range(nu) if self._u_parent[u] < 0):
            counter = self._respread(root, counter, {})  # all labels 0 yet: children stay in code order
        self._next_label = counter

    def _build_positions(self, rows: Sequence[Sequence[Any]]) -> None:
        u_of_id, u_level, u_lab, u_root = self._u_of_id, self._u_level, self._u_lab, self._u_root
        nid = len(u_of_id)
        max_pid = max((int(r[0]) for r in rows), default=0)
        self._pid_unit = array("i", [-1]) * (max_pid + 1)
        self._pid_role = array("i", [0]) * (max_pid + 1)
        # Sort by (role, level, root, label, id) packed into one int: far faster than tuples at 8 M.
        keys = []
        for pid, unit_id, role_id in rows:
            u = u_of_id[unit_id] if unit_id < nid else -1
            if u >= 0:
                self._pid_unit[pid] = u
                self._pid_role[pid] = role_id
                seg = ((role_id << 3 | u_level[u]) << _ROOT_BITS) | u_root[u]
                keys.append((((seg << _LAB_BITS) | u_lab[u]) << _ID_BITS) | pid)
        keys.sort()
        id_mask, lab_mask = (1 << _ID_BITS) - 1, (1 << _LAB_BITS) - 1
        p_id, p_lab, p_unit = array("q"), array("q"), array("i")
        current = -1
        pid_unit = self._pid_unit
        for key in keys:
            seg = key >> (_ID_BITS + _LAB_BITS)
            if seg != current:
                if current >= 0:
                    self._pad(p_id, p_lab, p_unit)
                current = seg
                self._segment(seg >> (_ROOT_BITS + 3), (seg >> _ROOT_BITS) & 7, seg & ((1 << _ROOT_BITS) - 1),
                              create=True)  # fmt: skip
                self._seg_base[-1] = len(p_id)
            pid = key & id_mask
            p_id.append(pid)
            p_lab.append((key >> _ID_BITS) & lab_mask)
            p_unit.append(pid_unit[pid])
            self._seg_len[-1] += 1
        if current >= 0:
            self._pad(p_id, p_lab, p_unit)
        del keys
        self._p_id, self._p_lab, self._p_unit = p_id, p_lab, p_unit
        n = len(p_id)
        self._h_one = array("q", bytes(8 * n))
        self._special = bytearray(b"\x01") * n
        nu = len(self._u_id)
        count = array("i", [0]) * (nu + 1)
        for pid, _unit_id, _role in rows:
            u = pid_unit[pid]
            if u >= 0:
                count[u + 1] += 1
        self._up_off = array("i", accumulate(count))
        fill = array("i", self._up_off[:nu])
        self._up_pid = array("q", [0]) * self._up_off[nu]
        for pid in sorted(int(r[0]) for r in rows):
            u = pid_unit[pid]
            if u >= 0:
                self._up_pid[fill[u]] = pid
                fill[u] += 1
                if not self._head_pid[u] and self.roles.get(self._pid_role[pid], _NO_ROLE).is_head:
                    self._head_pid[u] = pid  # the lowest head position id of a unit wins

    def _pad(self, p_id: array[int], p_lab: array[int], p_unit: array[int]) -> None:
        """Close the segment being built: spare slots at its end."""
        s = len(self._seg_key) - 1
        spare = 8 + self._seg_len[s] // 16
        p_id.extend(array("q", bytes(8 * spare)))
        p_lab.extend(array("q", [-1]) * spare)
        p_unit.extend(array("i", [-1]) * spare)
        self._seg_cap[s] = self._seg_len[s] + spare

    def _build_holders(self, rows: Iterable[Sequence[Any]]) -> None:
        """Place holders straight into the columns (no position → holders dict of 8 M lists at national scale)."""
        alternates: dict[int, list[tuple[int, str]]] = {}
        h_one, special, multi, p_id = self._h_one, self._special, self._multi, self._p_id
        for pos, person, kind in rows:
            k = self.find_slot(int(pos))
            if k < 0:
                continue
            if kind != "primary":
                alternates.setdefault(int(pos), []).append((int(person), str(kind)))
            elif h_one[k] == 0 and p_id[k] not in multi:
                h_one[k] = person  # the first primary (a pool gets its tuple below)
                special[k] = 0
            else:
                got = (int(h_one[k]),) if h_one[k] else multi[p_id[k]]
                self._set_primaries(k, sorted((*got, int(person))))
        self._alternates = {p: tuple(v) for p, v in alternates.items()}

    # ----------------------------------------------------------------- lookups
    def unit(self, unit_ref: int | str) -> int:
        """Handle of a unit given its id (int) or code (str); ``NotFound`` otherwise."""
        u = self.find_unit(unit_ref) if isinstance(unit_ref, int) else self._unit_by_code(unit_ref)
        if u < 0:
            raise NotFound("no such unit", data={"unit": unit_ref})
        return u

    def find_unit(self, unit_id: int) -> int:
        """The unit handle of ``unit_id``, or -1 when it is not (or no longer) in the tree."""
        return self._u_of_id[unit_id] if 0 <= unit_id < len(self._u_of_id) else -1

    def slot(self, position_id: int) -> int:
        k = self.find_slot(position_id)
        if k < 0:
            raise NotFound("no such position", data={"position_id": position_id})
        return k

    def find_slot(self, position_id: int) -> int:
        """The slot of ``position_id``, or -1 when it is not (or no longer) in the tree."""
        return self._slot_of(position_id)

    # --- units by handle
    def unit_count(self) -> int:
        return len(self._u_id) - self._u_dead.count(1)

    def units(self) -> Iterator[int]:
        """Every live unit handle (tests, benchmarks and the CLI walk the tree with it)."""
        dead = self._u_dead
        return (u for u in range(len(self._u_id)) if not dead[u])

    def unit_columns(self) -> UnitColumns:
        """Copies of every handle's name, level and retired flag (C-speed copies: ms at national scale).

        Why copies: the directory is built from them in a thread while the loop goes on patching
        this index; the copies stay as they were at the call.
        """
        return list(self._u_name), self._u_level.tobytes(), bytes(self._u_dead)

    def unit_id(self, u: int) -> int:
        return int(self._u_id[u])

    def unit_code(self, u: int) -> str:
        return self._u_code[u]

    def unit_name(self, u: int) -> str:
        return self._u_name[u]

    def unit_level(self, u: int) -> int:
        """1 province … 6 grid (``org_tree.divisions.Level``)."""
        return int(self._u_level[u])

    def parent(self, u: int) -> int:
        """The parent unit, or -1 for a root."""
        return int(self._u_parent[u])

    def contains(self, top: int, u: int) -> bool:
        """True when ``u`` is ``top`` or lies in its subtree."""
        return self._u_lab[top] <= self._u_lab[u] < self._u_lab_end[top]

    def child_toward(self, top: int, u: int) -> int:
        """The child of ``top`` whose subtree holds ``u``; -1 when ``u`` is ``top`` or outside it."""
        if u == top or not self.contains(top, u):
            return -1
        while self._u_parent[u] != top:
            u = self._u_parent[u]
        return u

    def common_ancestor(self, us: Iterable[int]) -> int:
        """The lowest unit whose subtree holds every unit of ``us``; -1 for none given (or no common root)."""
        lo = hi = -1
        for u in us:
            lo = u if lo < 0 or self._u_lab[u] < self._u_lab[lo] else lo
            hi = u if hi < 0 or self._u_lab[u] > self._u_lab[hi] else hi
        a = lo
        while a >= 0 and not self.contains(a, hi):
            a = self._u_parent[a]
        return a

    def children(self, u: int) -> list[int]:
        """``u``'s child units in code order."""
        return list(self._kids(u))

    def ancestors(self, u: int) -> Iterator[int]:
        """Units above ``u``, nearest first."""
        p = self._u_parent[u]
        while p >= 0:
            yield p
            p = self._u_parent[p]

    def unit_path(self, u: int) -> list[str]:
        """Names from the root down to ``u`` (for display)."""
        names = [self._u_name[a] for a in self.ancestors(u)]
        return [*reversed(names), self._u_name[u]]

    # --- positions by slot
    def position_count(self) -> int:
        return sum(self._seg_len)

    def slots(self) -> Iterator[int]:
        """Every position slot (tests, benchmarks and the CLI walk positions with it)."""
        for s in range(len(self._seg_key)):
            yield from range(self._seg_base[s], self._seg_base[s] + self._seg_len[s])

    def position_id(self, k: int) -> int:
        return int(self._p_id[k])

    def position_unit(self, k: int) -> int:
        """The handle of the unit position ``k`` belongs to."""
        return int(self._p_unit[k])

    def position_role(self, k: int) -> RoleInfo:
        return self.roles[self._pid_role[self._p_id[k]]]

    def position_title(self, k: int) -> str | None:
        """The title the position was created with (``POST /api/v1/org/positions``), else None."""
        return self._titles.get(int(self._p_id[k]))

    def position_role_id(self, k: int) -> int:
        return int(self._pid_role[self._p_id[k]])

    def role_and_unit(self, position_id: int) -> tuple[int, int] | None:
        """(role id, unit handle) of a position, or None when it is not in the tree (one call on hot paths)."""
        if not 0 <= position_id < len(self._pid_unit) or self._pid_unit[position_id] < 0:
            return None
        return int(self._pid_role[position_id]), int(self._pid_unit[position_id])

    def unit_ids_of_positions(self, position_ids: Iterable[int]) -> list[int]:
        """The unit id of each position (0 for one not in the tree), in one pass.

        Why a bulk form: a province-wide notice's receipts ask it for ~200,000
        positions in its send, and three method calls per position were a visible part of that.
        """
        pid_unit, u_id, n = self._pid_unit, self._u_id, len(self._pid_unit)
        ids = position_ids if isinstance(position_ids, Sequence) else list(position_ids)
        if not ids:
            return []
        if min(ids) >= 0 and max(ids) < n:  # the usual case: two lookups each, at C speed
            handles = list(map(pid_unit.__getitem__, ids))
            if min(handles) >= 0:
                return list(map(u_id.__getitem__, handles))
        out: list[int] = []
        for p in ids:
            u = pid_unit[p] if 0 <= p < n else -1
            out.append(int(u_id[u]) if u >= 0 else 0)
        return out

    def unit_of_position(self, position_id: int) -> int:
        """The unit handle of a position id, or -1."""
        ru = self.role_and_unit(position_id)
        return ru[1] if ru is not None else -1

    def head_slot(self, u: int) -> int:
        """The slot of the unit's head position, or -1 when it has none."""
        pid = self._head_pid[u]
        return self.find_slot(pid) if pid else -1

    def role_slot(self, u: int, role_id: int) -> int:
        """The first slot of role ``role_id`` in unit ``u`` (its own positions only), or -1."""
        s = self._segment(role_id, self._u_level[u], self._u_root[u])
        if s < 0:
            return -1
        a, b = self._seg_span(s, self._u_lab[u], self._u_lab[u] + 1)
        return a if a < b else -1

    def range_slots(self, ranges: Iterable[tuple[int, int]]) -> list[int]:
        """The slots of evaluated slot ranges (``org_tree.resolution.Ranges``), in order."""
        return [k for a, b in ranges for k in range(a, b)]

    def slot_ranges(self, slots: Iterable[int]) -> list[tuple[int, int]]:
        """Slot ranges (``org_tree.resolution.Ranges``) covering ``slots``, sorted and merged."""
        out: list[tuple[int, int]] = []
        for k in sorted(set(slots)):
            if k < 0:
                continue
            if out and out[-1][1] == k:
                out[-1] = (out[-1][0], k + 1)
            else:
                out.append((k, k + 1))
        return out

    def role_id(self, ref: str | int) -> int:
        rid = ref if isinstance(ref, int) and ref in self.roles else self.role_by_name.get(str(ref))
        if rid is None:
            raise NotFound("no such role", data={"role": ref})
        return int(rid)

    def primary_holders(self, k: int) -> tuple[int, ...]:
        h = self._h_one[k]
        if h:
            return (int(h),)
        return self._multi.get(self._p_id[k], ())

    def alternate_holders(self, k: int) -> tuple[tuple[int, str], ...]:
        """Deputies and acting holders of slot ``k`` as (person id, ``deputy``|``acting``)."""
        return self._alternates.get(self._p_id[k], ())

    def current_holders(self, k: int) -> set[int]:
        """Everyone holding slot ``k`` now: primary, deputy and acting."""
        return set(self.primary_holders(k)).union(p for p, _ in self.alternate_holders(k))

    def holds(self, person_id: int, position_id: int) -> bool:
        """True when ``person_id`` currently holds ``position_id`` (primary, deputy or acting)."""
        k = self.find_slot(position_id)
        return k >= 0 and self.holds_slot(k, person_id)

    def holding_slots(self, person_id: int, position_ids: Iterable[int]) -> list[tuple[int, int]]:
        """(slot, level) of those of ``position_ids`` that ``person_id`` holds now (找岗位's holder candidates)."""
        out = []
        for pid in position_ids:
            k = self._slot_of(pid)
            if k >= 0 and self.holds_slot(k, person_id):
                out.append((k, int(self._u_level[self._p_unit[k]])))
        return out

    def holds_slot(self, k: int, person_id: int) -> bool:
        """True when ``person_id`` currently holds slot ``k`` (primary, deputy or acting)."""
        h = self._h_one[k]
        if h == person_id if h else person_id in self._multi.get(self._p_id[k], ()):
            return True
        return any(p == person_id for p, _kind in self._alternates.get(self._p_id[k], ()))

    def is_vacant(self, k: int) -> bool:
        return not self.primary_holders(k)

    def unit_slots(self, u: int) -> list[int]:
        """Slots of unit ``u``'s own positions, by position id."""
        return [self.find_slot(p) for p in self._unit_pids(u)]

    def superior_slot(self, k: int) -> int:
        """The same role in the nearest unit above that has it ("my superior"), or -1."""
        role = self.position_role_id(k)
        for a in self.ancestors(self._p_unit[k]):
            j = self.role_slot(a, role)
            if j >= 0:
                return j
        return -1

    def role_under(self, role_id: int, u: int, levels: Sequence[int] | None) -> list[tuple[int, int]]:
        """Slot ranges of ``role_id`` in the subtree of ``u`` (optionally only at ``levels``)."""
        role = self.roles.get(role_id)
        wanted = set(levels if levels is not None else (role.levels if role else range(1, 7)))
        lo, hi, root = self._u_lab[u], self._u_lab_end[u], self._u_root[u]
        out = []
        for level in sorted(wanted):
            s = self._segment(role_id, level, root)
            if s >= 0:
                a, b = self._seg_span(s, lo, hi)
                if a < b:
                    out.append((a, b))
        return out

    def role_under_all(self, u: int) -> list[tuple[int, int]]:
        """Slot ranges of every position in the subtree of ``u`` (one per segment)."""
        lo, hi = self._u_lab[u], self._u_lab_end[u]
        out = []
        for s in self._segs_by_root.get(self._u_root[u], ()):
            a, b = self._seg_span(s, lo, hi)
            if a < b:
                out.append((a, b))
        return sorted(out)

    def role_everywhere(self, role_id: int) -> list[tuple[int, int]]:
        """Slot ranges of every position of ``role_id`` in the whole tree."""
        out = []
        for s in self._segs_by_role.get(role_id, ()):
            a = self._seg_base[s]
            if self._seg_len[s]:
                out.append((a, a + self._seg_len[s]))
        return sorted(out)

    def role_pieces(self, role_id: int) -> list[tuple[int, int, int]]:
        """(start, end, level) of every non-empty segment of ``role_id`` (the directory's role matches)."""
        out = []
        for s in self._segs_by_role.get(role_id, ()):
            if self._seg_len[s]:
                out.append((int(self._seg_base[s]), int(self._seg_base[s] + self._seg_len[s]), self._seg_key[s][1]))
        return out

    def subtree_pieces(self, u: int) -> list[tuple[int, int, int]]:
        """(start, end, level) of the positions under ``u`` in each segment at or below its level."""
        lo, hi, top, out = self._u_lab[u], self._u_lab_end[u], self._u_level[u], []
        for s in self._segs_by_root.get(self._u_root[u], ()):
            level = self._seg_key[s][1]
            if level >= top and self._seg_len[s]:
                a, b = self._seg_span(s, lo, hi)
                if a < b:
                    out.append((a, b, level))
        return out

    def find_unit_code(self, code: str) -> int:
        """The handle of the unit with exactly this code, or -1."""
        return self._unit_by_code(code)

    def stats(self) -> dict[str, int]:
        by_level = {lvl: 0 for lvl in range(1, 7)}
        for u in self.units():
            by_level[self._u_level[u]] += 1
        held = sum(1 for k in self.slots() if self._h_one[k]) + sum(len(v) for v in self._multi.values())
        return {
            "version": self.version,
            "units": self.unit_count(),
            **{f"level_{k}": v for k, v in by_level.items()},
            "positions": self.position_count(),
            "primary_holders": held,
        }

    def memory_bytes(self) -> int:
        """Approximate memory held by the index's columns and strings."""
        total = 0
        for value in vars(self).values():
            if isinstance(value, array | bytearray):
                total += len(memoryview(value).cast("B")) + 64
        total += sum(sys.getsizeof(s) for s in set(self._u_name)) + sys.getsizeof(self._u_name)
        total += sum(sys.getsizeof(s) for s in self._u_code) + sys.getsizeof(self._u_code) * 2
        return total


_NO_ROLE = RoleInfo(0, "", "", (), "none", False, False)


def __getattr__(name: str) -> Any:
    """``OrgIndexHolder`` moved to ``org_tree.holder``; old imports keep working."""
    if name == "OrgIndexHolder":
        from org_tree.holder import OrgIndexHolder

        return OrgIndexHolder
    raise AttributeError(name)
