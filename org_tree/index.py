"""The in-memory, versioned org index every process routes with.

Why: the tree is read millions of times and changed rarely, and a notice to
"every 专职网格员 under 柯城区" must resolve in well under a millisecond per
thousand positions. Units are numbered in pre-order, so a subtree is the
interval ``[pre, end)``. Positions are sorted by (role, level, unit pre-order),
so "role X under unit U at level L" is two bisections into one segment, a
contiguous range of *slots*. Holders are stored in CSR form aligned with the
slots, so the holders of a range of slots are one contiguous slice. Everything
lives in ``array`` columns to keep a national tree (2.5 M units, 8 M
positions) within a few hundred MiB.

Callers outside this package use the look-up methods (``unit``, ``find_slot``,
``holds``, ``contains``, ``child_toward``, ``subtree``, ``position_unit`` …)
and never the columns, which are private: the numbering inside may change
(it is an implementation detail), the methods' meaning does not.

Changes: ``OrgIndexHolder.refresh_if_changed()`` costs one query while nothing
changed. When only holders of a few positions changed (assign, handover) the
index is patched through a small overlay; anything else rebuilds.
"""

from __future__ import annotations

import logging
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from sqlalchemy import select

from kernel.db.database import Database
from kernel.errors import NotFound
from org_tree.bulk import fetch_rows, lift_statement_timeout
from org_tree.org_schema import assignments, org_changes
from org_tree.versioning import read_version

logger = logging.getLogger(__name__)

__all__ = ["OrgIndex", "OrgIndexHolder", "RoleInfo"]

_PATCH_LIMIT = 2_000  # more changed positions than this in one refresh → rebuild
_ID_BITS = 40  # position and person ids below 2**40 (10**12)
_U_BITS = 28  # up to 268 M units


@dataclass(frozen=True, slots=True)
class RoleInfo:
    id: int
    key: str
    name: str
    levels: tuple[int, ...]
    jurisdiction: str
    is_head: bool
    pool: bool


class OrgIndex:
    """An immutable-by-convention snapshot of the tree at ``version`` (patched only by its holder)."""

    def __init__(self, version: int) -> None:
        self.version = version
        # --- units, indexed by pre-order number ``u`` ---
        self._u_id = array("q")
        self._u_end = array("i")  # subtree of u is [u, u_end[u])
        self._u_parent = array("i")  # -1 for roots
        self._u_level = array("b")
        self._u_code: list[str] = []
        self._u_name: list[str] = []
        self._u_of_id = array("i")  # unit id → u, -1 when absent
        self._codes_sorted: list[str] = []
        self._codes_u = array("i")
        # --- positions, indexed by slot ``k`` sorted by (role, level, u, id) ---
        self._p_id = array("q")
        self._p_unit = array("i")  # u of the position's unit
        self._p_role = array("i")  # role id
        self._k_of_id = array("i")  # position id → k, -1 when absent
        self._segments: dict[tuple[int, int], tuple[int, int]] = {}  # (role id, level) → [start, end)
        self._seg_starts = array("i")  # sorted segment starts, to split ranges at segment borders
        self._up_off = array("i")  # positions of unit u: up_k[up_off[u]:up_off[u+1]]
        self._up_k = array("i")
        self._head_k = array("i")  # slot of the unit head's position, -1 if the unit has none
        # --- current primary holders (CSR aligned with slots) ---
        self._h_off = array("i")
        self._h_person = array("q")
        self._h_pos = array("q")  # position id of each holder entry (the position it receives through)
        self._alternates: dict[int, tuple[tuple[int, str], ...]] = {}  # k → deputies/acting (person, kind)
        self._overlay: dict[int, tuple[int, ...]] = {}  # k → primary holders replacing the CSR entries
        self._special = array("i")  # sorted slots that are vacant in the CSR or overlaid
        # Memo of vacancy outcomes per (slot, policy), owned by org_tree.resolution; dropped on every patch.
        self._memo: dict[object, object] = {}
        self.roles: dict[int, RoleInfo] = {}
        self.role_by_name: dict[str, int] = {}  # key and display name → role id

    # ----------------------------------------------------------------- loading
    @classmethod
    async def load(cls, db: Database) -> OrgIndex:
        """Read the whole tree in one read transaction and build the index."""
        async with db.read() as conn:
            await lift_statement_timeout(conn)
            version = await read_version(conn)
            role_rows = await fetch_rows(
                conn, "SELECT id, key, name, levels, jurisdiction, is_head, pool FROM roles ORDER BY id"
            )
            unit_rows = await fetch_rows(
                conn, "SELECT id, parent_id, level, code, name FROM units WHERE dissolved_at IS NULL ORDER BY code"
            )
            pos_rows = await fetch_rows(
                conn,
                "SELECT p.id, p.unit_id, p.role_id FROM positions p JOIN units u ON u.id = p.unit_id "
                "WHERE p.removed_at IS NULL AND u.dissolved_at IS NULL",
            )
            holder_rows = await fetch_rows(
                conn, "SELECT position_id, person_id, kind FROM assignments WHERE end_at IS NULL"
            )
        return cls.build(version, role_rows, unit_rows, pos_rows, holder_rows)

    @classmethod
    def build(
        cls,
        version: int,
        role_rows: Sequence[Sequence[Any]],
        unit_rows: Sequence[Sequence[Any]],
        pos_rows: Sequence[Sequence[Any]],
        holder_rows: Sequence[Sequence[Any]],
    ) -> OrgIndex:
        """Build from plain rows (also used by tests with hand-made trees)."""
        idx = cls(version)
        from org_tree.divisions import Level  # local: keeps the import graph flat

        for rid, key, name, levels, juris, is_head, pool in role_rows:
            lv = tuple(int(Level.parse(x)) for x in str(levels).split(",") if x)
            info = RoleInfo(int(rid), str(key), str(name), lv, str(juris), bool(is_head), bool(pool))
            idx.roles[info.id] = info
            idx.role_by_name.setdefault(info.key, info.id)
            idx.role_by_name.setdefault(info.name, info.id)
        idx._build_units(unit_rows)
        idx._build_positions(pos_rows)
        idx._build_holders(holder_rows)
        return idx

    def _build_units(self, rows: Sequence[Sequence[Any]]) -> None:
        n = len(rows)
        max_id = max((int(r[0]) for r in rows), default=0)
        row_of_id = array("i", [-1]) * (max_id + 1)
        for i, r in enumerate(rows):
            row_of_id[r[0]] = i
        # children in CSR form (rows come ordered by code, so children are in code order)
        nchild = array("i", [0]) * (n + 1)
        parent_row = array("i", [-1]) * n
        for i, r in enumerate(rows):
            p = r[1]
            if p is not None and p <= max_id and row_of_id[p] >= 0:
                parent_row[i] = row_of_id[p]
                nchild[parent_row[i]] += 1
        off = array("i", [0]) * (n + 1)
        for i in range(n):
            off[i + 1] = off[i] + nchild[i]
        fill = array("i", off[:n])
        kids = array("i", [0]) * max(off[n], 1)
        roots = []
        for i in range(n):
            pr = parent_row[i]
            if pr < 0:
                if rows[i][1] is None:  # a unit whose parent is dissolved is left out, with its subtree
                    roots.append(i)
            else:
                kids[fill[pr]] = i
                fill[pr] += 1
        # iterative pre-order walk; u_end is filled when a subtree is left
        u_of_row = array("i", [0]) * n
        self._u_end = array("i", [0]) * n
        self._u_parent = array("i", [-1]) * n
        self._u_level = array("b", [0]) * n
        self._u_id = array("q", [0]) * n
        self._u_code = [""] * n
        self._u_name = [""] * n
        counter = 0
        stack: list[int] = [~r for r in reversed(roots)]
        while stack:
            item = stack.pop()
            if item >= 0:  # leaving row ``item``
                self._u_end[u_of_row[item]] = counter
                continue
            i = ~item
            u = counter
            counter += 1
            u_of_row[i] = u
            r = rows[i]
            self._u_id[u] = r[0]
            self._u_level[u] = r[2]
            self._u_code[u] = r[3]
            name = str(r[4])
            self._u_name[u] = sys.intern(name) if name.startswith("第") else name  # 第N网格 repeats
            pr = parent_row[i]
            self._u_parent[u] = u_of_row[pr] if pr >= 0 else -1
            stack.append(i)
            for j in range(off[i + 1] - 1, off[i] - 1, -1):
                stack.append(~kids[j])
        if counter < n:  # orphaned units were not visited: drop their (unused) tail
            for col in (self._u_end, self._u_parent, self._u_level, self._u_id, self._u_code, self._u_name):
                del col[counter:]
            n = counter
        self._u_of_id = array("i", [-1]) * (max_id + 1)
        for u in range(n):
            self._u_of_id[self._u_id[u]] = u
        order = sorted(range(n), key=self._u_code.__getitem__)
        self._codes_sorted = [self._u_code[u] for u in order]
        self._codes_u = array("i", order)

    def _build_positions(self, rows: Sequence[Sequence[Any]]) -> None:
        # Sort by (role, level, unit pre-order, id) packed into one int: sorting plain ints is
        # several times faster than sorting tuples, which matters at 8 M positions.
        u_of_id, u_level = self._u_of_id, self._u_level
        nid = len(u_of_id)
        keys = []
        for pid, unit_id, role_id in rows:
            u = u_of_id[unit_id] if unit_id < nid else -1
            if u >= 0:
                keys.append((((role_id << 3 | u_level[u]) << _U_BITS | u) << _ID_BITS) | pid)
        keys.sort()
        n = len(keys)
        id_mask, u_mask = (1 << _ID_BITS) - 1, (1 << _U_BITS) - 1
        self._p_id = array("q", [key & id_mask for key in keys])
        self._p_unit = array("i", [(key >> _ID_BITS) & u_mask for key in keys])
        seg_of = [key >> (_ID_BITS + _U_BITS) for key in keys]  # role << 3 | level
        del keys
        self._p_role = array("i", [sg >> 3 for sg in seg_of])
        self._k_of_id = array("i", [-1]) * (max(self._p_id, default=0) + 1)
        k_of_id = self._k_of_id
        for k, pid in enumerate(self._p_id):
            k_of_id[pid] = k
        for sg in sorted(set(seg_of)):
            self._segments[(sg >> 3, sg & 7)] = (bisect_left(seg_of, sg), bisect_right(seg_of, sg))
        del seg_of
        self._seg_starts = array("i", sorted(start for start, _ in self._segments.values()))
        nu = len(self._u_id)
        count = array("i", [0]) * (nu + 1)
        for u in self._p_unit:
            count[u + 1] += 1
        self._up_off = array("i", accumulate(count))
        fill = array("i", self._up_off[:nu])
        up_k = self._up_k = array("i", [0]) * n
        for k, u in enumerate(self._p_unit):
            up_k[fill[u]] = k
            fill[u] += 1
        head_k = self._head_k = array("i", [-1]) * nu
        p_unit = self._p_unit
        for (role_id, _level), (a, b) in sorted(self._segments.items()):
            role = self.roles.get(role_id)
            if role is None or not role.is_head:
                continue
            for k in range(a, b):  # ascending slots: the first head position of a unit wins
                if head_k[p_unit[k]] < 0:
                    head_k[p_unit[k]] = k

    def _build_holders(self, rows: Sequence[Sequence[Any]]) -> None:
        n = len(self._p_id)
        k_of_id = self._k_of_id
        nk = len(k_of_id)
        # (slot << 40 | person) for every current primary holder of a live position, sorted by slot
        keys = [
            k_of_id[pos] << _ID_BITS | person
            for pos, person, kind in rows
            if kind == "primary" and pos < nk and k_of_id[pos] >= 0
        ]
        keys.sort()
        id_mask = (1 << _ID_BITS) - 1
        self._h_person = array("q", [key & id_mask for key in keys])
        slots = array("i", [key >> _ID_BITS for key in keys])
        del keys
        p_id = self._p_id
        self._h_pos = array("q", [p_id[k] for k in slots])
        count = array("i", [0]) * (n + 1)
        for k in slots:
            count[k + 1] += 1
        self._h_off = array("i", accumulate(count))
        alternates: dict[int, list[tuple[int, str]]] = {}
        for pos, person, kind in rows:
            if kind != "primary" and pos < nk and k_of_id[pos] >= 0:
                alternates.setdefault(k_of_id[pos], []).append((int(person), str(kind)))
        self._alternates = {k: tuple(v) for k, v in alternates.items()}
        self._rebuild_special()

    def _rebuild_special(self) -> None:
        h_off = self._h_off
        vacant = [k for k in range(len(self._p_id)) if h_off[k] == h_off[k + 1]]
        self._special = array("i", sorted(set(vacant).union(self._overlay)))

    # -------------------------------------------------------------- patching
    def patch_holders(self, holders: dict[int, tuple[list[int], list[tuple[int, str]]]], version: int) -> None:
        """Replace the holders of some positions (position id → (primaries, alternates))."""
        for pos_id, (primary, alternates) in holders.items():
            k = self._k_of_id[pos_id] if pos_id < len(self._k_of_id) else -1
            if k < 0:
                continue
            self._overlay[k] = tuple(primary)
            if alternates:
                self._alternates[k] = tuple(alternates)
            else:
                self._alternates.pop(k, None)
        self._rebuild_special()
        self._memo = {}
        self.version = version

    # ----------------------------------------------------------------- lookups
    def unit(self, unit_ref: int | str) -> int:
        """Pre-order number of a unit given its id (int) or code (str); ``NotFound`` otherwise."""
        if isinstance(unit_ref, int):
            u = self._u_of_id[unit_ref] if 0 <= unit_ref < len(self._u_of_id) else -1
        else:
            i = bisect_left(self._codes_sorted, unit_ref)
            found = i < len(self._codes_sorted) and self._codes_sorted[i] == unit_ref
            u = self._codes_u[i] if found else -1
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
        return self._k_of_id[position_id] if 0 <= position_id < len(self._k_of_id) else -1

    # --- units by handle
    def unit_count(self) -> int:
        return len(self._u_id)

    def units(self) -> range:
        """Every unit handle (tests, benchmarks and the CLI walk the tree with it)."""
        return range(len(self._u_id))

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
        return top <= u < self._u_end[top]

    def child_toward(self, top: int, u: int) -> int:
        """The child of ``top`` whose subtree holds ``u``; -1 when ``u`` is ``top`` or outside it."""
        if not top < u < self._u_end[top]:
            return -1
        c = top + 1
        while self._u_end[c] <= u:
            c = self._u_end[c]
        return c

    def common_ancestor(self, us: Iterable[int]) -> int:
        """The lowest unit whose subtree holds every unit of ``us``; -1 for none given (or no common root)."""
        lo = hi = -1
        for u in us:
            lo = u if lo < 0 or u < lo else lo
            hi = u if u > hi else hi
        a = lo
        while a >= 0 and not a <= hi < self._u_end[a]:
            a = self._u_parent[a]
        return a

    def subtree(self, u: int, depth: int | None = None) -> Iterator[int]:
        """``u`` and the units below it (at most ``depth`` levels down), parents before children."""
        top = self._u_level[u]
        for v in range(u, self._u_end[u]):
            if depth is None or self._u_level[v] - top <= depth:
                yield v

    # --- positions by slot
    def position_count(self) -> int:
        return len(self._p_id)

    def slots(self) -> range:
        """Every position slot (tests, benchmarks and the CLI walk positions with it)."""
        return range(len(self._p_id))

    def position_id(self, k: int) -> int:
        return int(self._p_id[k])

    def position_unit(self, k: int) -> int:
        """The handle of the unit position ``k`` belongs to."""
        return int(self._p_unit[k])

    def position_role(self, k: int) -> RoleInfo:
        return self.roles[self._p_role[k]]

    def position_role_id(self, k: int) -> int:
        return int(self._p_role[k])

    def role_and_unit(self, position_id: int) -> tuple[int, int] | None:
        """(role id, unit handle) of a position, or None when it is not in the tree (one call on hot paths)."""
        k = self.find_slot(position_id)
        return (int(self._p_role[k]), int(self._p_unit[k])) if k >= 0 else None

    def head_slot(self, u: int) -> int:
        """The slot of the unit's head position, or -1 when it has none."""
        return int(self._head_k[u])

    def role_slot(self, u: int, role_id: int) -> int:
        """The first slot of role ``role_id`` in unit ``u`` (its own positions only), or -1."""
        for k in self.unit_slots(u):
            if self._p_role[k] == role_id:
                return int(k)
        return -1

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
        if k in self._overlay:
            return self._overlay[k]
        return tuple(self._h_person[self._h_off[k] : self._h_off[k + 1]])

    def alternate_holders(self, k: int) -> tuple[tuple[int, str], ...]:
        """Deputies and acting holders of slot ``k`` as (person id, ``deputy``|``acting``)."""
        return self._alternates.get(k, ())

    def current_holders(self, k: int) -> set[int]:
        """Everyone holding slot ``k`` now: primary, deputy and acting."""
        return set(self.primary_holders(k)).union(p for p, _ in self._alternates.get(k, ()))

    def holds(self, person_id: int, position_id: int) -> bool:
        """True when ``person_id`` currently holds ``position_id`` (primary, deputy or acting)."""
        k = self.find_slot(position_id)
        if k < 0:
            return False
        if person_id in self.primary_holders(k):
            return True
        return any(p == person_id for p, _kind in self._alternates.get(k, ()))

    def is_vacant(self, k: int) -> bool:
        return not self.primary_holders(k)

    def ancestors(self, u: int) -> Iterator[int]:
        """Units above ``u``, nearest first."""
        p = self._u_parent[u]
        while p >= 0:
            yield p
            p = self._u_parent[p]

    def children(self, u: int) -> list[int]:
        """Pre-order numbers of ``u``'s child units: each child's subtree ends where the next begins."""
        out = []
        c = u + 1
        end = self._u_end[u]
        while c < end:
            out.append(c)
            c = self._u_end[c]
        return out

    def unit_slots(self, u: int) -> array[int]:
        return self._up_k[self._up_off[u] : self._up_off[u + 1]]

    def superior_slot(self, k: int) -> int:
        """The same role in the nearest unit above that has it ("my superior"), or -1."""
        role = self._p_role[k]
        for a in self.ancestors(self._p_unit[k]):
            for j in self.unit_slots(a):
                if self._p_role[j] == role:
                    return j
        return -1

    def role_under(self, role_id: int, u: int, levels: Sequence[int] | None) -> list[tuple[int, int]]:
        """Slot ranges of ``role_id`` in the subtree of ``u`` (optionally only at ``levels``)."""
        lo, hi = u, self._u_end[u]
        role = self.roles.get(role_id)
        wanted = levels if levels is not None else (role.levels if role else range(1, 7))
        out = []
        for level in sorted(set(wanted)):
            seg = self._segments.get((role_id, level))
            if seg is None:
                continue
            a = bisect_left(self._p_unit, lo, seg[0], seg[1])
            b = bisect_left(self._p_unit, hi, a, seg[1])
            if a < b:
                out.append((a, b))
        return out

    def role_under_all(self, u: int) -> list[tuple[int, int]]:
        """Slot ranges of every position in the subtree of ``u`` (one per segment)."""
        lo, hi = u, self._u_end[u]
        out = []
        for s, e in self._segments.values():
            a = bisect_left(self._p_unit, lo, s, e)
            b = bisect_left(self._p_unit, hi, a, e)
            if a < b:
                out.append((a, b))
        return out

    def unit_path(self, u: int) -> list[str]:
        """Names from the root down to ``u`` (for display)."""
        names = [self._u_name[a] for a in self.ancestors(u)]
        return [*reversed(names), self._u_name[u]]

    def stats(self) -> dict[str, int]:
        by_level = {lvl: 0 for lvl in range(1, 7)}
        for lv in self._u_level:
            by_level[lv] += 1
        return {
            "version": self.version,
            "units": len(self._u_id),
            **{f"level_{k}": v for k, v in by_level.items()},
            "positions": len(self._p_id),
            "primary_holders": len(self._h_person),
        }

    def memory_bytes(self) -> int:
        """Approximate memory held by the index's columns and strings."""
        total = 0
        for value in vars(self).values() if hasattr(self, "__dict__") else ():
            if isinstance(value, array):
                total += value.itemsize * len(value) + 64
        total += sum(sys.getsizeof(s) for s in set(self._u_name)) + sys.getsizeof(self._u_name)
        total += sum(sys.getsizeof(s) for s in self._u_code) + sys.getsizeof(self._u_code) * 2
        return total


class OrgIndexHolder:
    """Owns the current index of this process and keeps it in step with ``org_version``.

    Call :meth:`refresh_if_changed` periodically (~0.5 s) and after a broker hint;
    while nothing changed it costs one indexed single-row query.
    """

    def __init__(self, db: Database, index: OrgIndex | None = None) -> None:
        self._db = db
        self._index = index
        self.rebuilds = 0
        self.patches = 0

    @property
    def index(self) -> OrgIndex:
        if self._index is None:
            raise RuntimeError("OrgIndexHolder.load() was not awaited")
        return self._index

    async def load(self) -> OrgIndex:
        self._index = await OrgIndex.load(self._db)
        self.rebuilds += 1
        return self._index

    async def refresh_if_changed(self) -> bool:
        """Bring the index up to the committed version; True when it changed."""

        if self._index is None:
            await self.load()
            return True
        current = self._index.version
        async with self._db.read() as conn:
            version = await read_version(conn)
            if version == current:
                return False
            changes = (
                await conn.execute(
                    select(org_changes.c.scope, org_changes.c.position_id)
                    # bounded above: under READ COMMITTED a later statement may see newer commits
                    .where(org_changes.c.version > current, org_changes.c.version <= version)
                    .limit(_PATCH_LIMIT + 1)
                )
            ).all()
            pos_ids = {int(p) for s, p in changes if s == "holders" and p is not None}
            patchable = version > current and len(changes) <= _PATCH_LIMIT and all(s == "holders" for s, _ in changes)
            if patchable and pos_ids:
                rows = (
                    await conn.execute(
                        select(assignments.c.position_id, assignments.c.person_id, assignments.c.kind)
                        .where(assignments.c.position_id.in_(pos_ids), assignments.c.end_at.is_(None))
                        .order_by(assignments.c.id)
                    )
                ).all()
        if not (patchable and pos_ids):
            await self.load()
            return True
        holders: dict[int, tuple[list[int], list[tuple[int, str]]]] = {p: ([], []) for p in pos_ids}
        for pos_id, person_id, kind in rows:
            if kind == "primary":
                holders[int(pos_id)][0].append(int(person_id))
            else:
                holders[int(pos_id)][1].append((int(person_id), str(kind)))
        self._index.patch_holders(holders, version)
        self.patches += 1
        return True
