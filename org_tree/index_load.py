"""Loading the org index: the rows read from the database, and the index built from them.

Why a module of its own: the build is the one part of the index that runs once per (re)build and
off the event loop (``OrgIndex.load`` reads in the loop, builds in a thread), while the look-ups
(``org_tree.index``) and the edits (``org_tree.index_patch``) run in the loop on the live index
many times a second. ``OrgIndex`` inherits ``IndexLoad``, so ``OrgIndex.load``, ``OrgIndex.fetch``
and ``OrgIndex.build`` stay where callers and tests call them.

The build lays the columns out as ``org_tree.index_base`` describes: units get handles in code
order and gapped labels, positions are sorted into segments with slack, holders go straight into
the holder columns.
"""

from __future__ import annotations

import asyncio
import sys
from array import array
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any, Self

from kernel.db.database import Database
from org_tree.bulk import fetch_columns, fetch_rows, lift_statement_timeout
from org_tree.index_base import RoleInfo
from org_tree.index_patch import IndexPatches
from org_tree.versioning import read_version

__all__ = ["FETCH_CHUNK", "IndexLoad", "IndexRows", "role_info"]

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


class IndexLoad(IndexPatches):
    """How an ``OrgIndex`` comes to be: read the rows (``fetch``), build the columns from them (``build``)."""

    @classmethod
    async def load(cls, db: Database) -> Self:
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
    ) -> Self:
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
            k = self._slot_of(int(pos))
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


_NO_ROLE = RoleInfo(0, "", "", (), "none", False, False)
