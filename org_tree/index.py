"""The in-memory, versioned org index every process routes with.

Why: the tree is read millions of times and changed every day, and a notice to
"every 专职网格员 under 柯城区" must resolve in well under a millisecond per
thousand positions. A subtree is an interval of unit labels, and the positions
of one role and level under a unit are one contiguous range of *slots* whose
primary holders are one slice of a holder column. Everything lives in
``array`` columns to keep a national tree (2.5 M units, 8 M positions) within a
few GiB. The layout, and why structural edits stay local, is in
``org_tree.index_base``; the edits themselves in ``org_tree.index_patch``; how it is read
from the database and built (``OrgIndex.load``, ``fetch``, ``build``) in ``org_tree.index_load``.

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

import logging
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from kernel.errors import NotFound
from org_tree.index_base import RoleInfo
from org_tree.index_load import IndexLoad

logger = logging.getLogger(__name__)

__all__ = ["OrgIndex", "RoleInfo", "UnitColumns"]

#: Every unit handle's name, level and retired flag (1), as ``OrgIndex.unit_columns`` copies them.
UnitColumns = tuple[list[str], bytes, bytes]


class OrgIndex(IndexLoad):
    """A snapshot of the tree at ``version``, patched in place by its holder as the org changes."""

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


def __getattr__(name: str) -> Any:
    """``OrgIndexHolder`` moved to ``org_tree.holder``; old imports keep working."""
    if name == "OrgIndexHolder":
        from org_tree.holder import OrgIndexHolder

        return OrgIndexHolder
    raise AttributeError(name)
