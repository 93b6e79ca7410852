"""The columns of the org index and the two layouts that make structural edits local.

Why this layout (issue 17): a notice to "every 专职网格员 under 衢州市" must
stay one contiguous slice of position slots, *and* creating, moving or
retiring a unit must not renumber the tree. Two numberings do that:

* **Gapped nested-interval labels for units.** Each unit has a stable handle
  ``u`` (an array index, never reused) and a label interval
  ``[lab[u], lab_end[u])`` holding its subtree's labels, with a free tail
  (``free[u]`` … ``lab_end[u]``) of ``2 + subtree size / 8`` labels kept for
  new descendants. A new unit or a moved subtree takes labels from its new
  parent's tail; when the tail is too short, the nearest ancestor with
  enough room re-spreads *its own subtree* (a local renumber, cost
  proportional to that subtree). Labels are int64, so new provinces go past
  the end. We chose gaps over an order-maintenance list because a subtree
  test stays two integer comparisons and the positions can be kept sorted by
  label with plain bisection.
* **Segments with slack for positions.** Positions are sorted by
  ``(role, level, province, unit label, position id)``; each
  ``(role, level, province)`` is a *segment* laid out in the global columns
  with spare slots at its end. A subtree's positions of one role and level
  are a contiguous block of one segment, so an insert is one ``memmove``
  inside one province's segment (C speed, at most a few MiB at national
  scale) and a subtree move is a block rotation inside it. Only when a
  segment's slack runs out are the later segments shifted (amortised rare).

Slots (``k``) are therefore *transient*: valid until the index is next
patched (never across an ``await``). Unit handles and position ids are
stable. Holders are kept per slot: ``h_one[k]`` is the single primary holder
(most positions), and ``special[k] == 1`` marks slots whose outcome needs a
look (vacant, pooled or several primaries, kept in ``multi``), so a range of
ordinary slots resolves as one slice and special ones are found by
``bytearray.find`` (``memchr``).
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)

__all__ = ["IndexColumns", "RoleInfo", "Row", "csr_row"]


def csr_row(data: array[int], off: array[int], over: dict[int, list[int]], i: int) -> list[int]:
    """Row ``i`` of a list kept as compressed sparse rows: ``over[i]`` if it changed since the build, else
    ``data[off[i]:off[i + 1]]`` as built (empty past the built rows). Compact at province scale."""
    row = over.get(i)
    if row is not None:
        return row
    if i + 1 < len(off):
        return list(data[off[i] : off[i + 1]])
    return []


Row = tuple[int, int, int, int, int]  # (position id, unit handle, label, primary holder or 0, special flag)
_MIN_GROW = 64


@dataclass(frozen=True, slots=True)
class RoleInfo:
    id: int
    key: str
    name: str
    levels: tuple[int, ...]
    jurisdiction: str
    is_head: bool
    pool: bool


def slack_of(level: int, size: int) -> int:
    """Free labels kept at the tail of a unit's interval (none below grids, which have no children)."""
    return 0 if level >= 6 else 2 + size // 8


class IndexColumns:
    """Every column of the index, and the segment primitives the patches use."""

    def __init__(self, version: int) -> None:
        self.version = version
        # --- units by stable handle ``u`` ---
        self._u_id = array("q")
        self._u_lab = array("q")  # the unit's own label; its subtree is [lab, lab_end)
        self._u_lab_end = array("q")
        self._u_free = array("q")  # first free label of the interval's tail (new children go here)
        self._u_parent = array("i")  # -1 for roots
        self._u_root = array("i")  # the root (province) above, itself for a root
        self._u_level = array("b")
        self._u_dead = bytearray()  # 1: retired (the handle stays, never reused)
        self._u_code: list[str] = []
        self._u_name: list[str] = []
        self._u_of_id = array("i")  # unit id → handle, -1 when absent
        self._codes_sorted: list[str] = []  # codes at the last build, with their handles
        self._codes_u = array("i")
        self._code_over: dict[str, int] = {}  # codes added or moved since the build (-1: removed)
        self._kid_off = array("i")  # children (by code) of u at build: kid[kid_off[u]:kid_off[u+1]]
        self._kid = array("i")
        self._kid_over: dict[int, list[int]] = {}  # children of units changed since the build
        self._up_off = array("i")  # position ids of u at build: up_pid[up_off[u]:up_off[u+1]]
        self._up_pid = array("q")
        self._up_over: dict[int, list[int]] = {}  # positions of units changed since the build
        self._head_pid = array("q")  # the unit head's position id, 0 for none
        self._next_label = 0  # labels at and past this are free (new roots go here)
        # --- positions by id ---
        self._pid_unit = array("i")  # position id → unit handle, -1 when absent
        self._pid_role = array("i")
        self._titles: dict[int, str] = {}  # position id → its title, for the few positions that have one
        # --- positions by slot ``k`` (segments with slack) ---
        self._p_id = array("q")
        self._p_unit = array("i")
        self._p_lab = array("q")
        self._h_one = array("q")  # the one primary holder, 0 when vacant or several
        self._special = bytearray()  # 1: vacant, several primaries, or pooled (see ``multi``)
        self._seg_of: dict[tuple[int, int, int], int] = {}  # (role id, level, root handle) → segment
        self._seg_key: list[tuple[int, int, int]] = []
        self._seg_base = array("q")
        self._seg_len = array("q")
        self._seg_cap = array("q")
        self._segs_by_root: dict[int, list[int]] = {}
        self._segs_by_role: dict[int, list[int]] = {}
        # --- holders ---
        self._multi: dict[int, tuple[int, ...]] = {}  # position id → primaries when not exactly one
        self._alternates: dict[int, tuple[tuple[int, str], ...]] = {}  # position id → deputies/acting
        # Memo of vacancy outcomes per (position id, policy), owned by org_tree.resolution; dropped on every patch.
        self._memo: dict[object, object] = {}
        self.roles: dict[int, RoleInfo] = {}
        self.role_by_name: dict[str, int] = {}  # key and display name → role id

    # ------------------------------------------------------------ segments
    def _segment(self, role_id: int, level: int, root: int, *, create: bool = False) -> int:
        """The segment of (role, level, root); -1 (or a new empty one) when absent."""
        s = self._seg_of.get((role_id, level, root), -1)
        if s >= 0 or not create:
            return s
        s = len(self._seg_key)
        self._seg_key.append((role_id, level, root))
        self._seg_of[(role_id, level, root)] = s
        self._seg_base.append(len(self._p_id))
        self._seg_len.append(0)
        self._seg_cap.append(0)
        self._segs_by_root.setdefault(root, []).append(s)
        self._segs_by_role.setdefault(role_id, []).append(s)
        return s

    def _seg_span(self, s: int, lo: int, hi: int) -> tuple[int, int]:
        """Slots of segment ``s`` whose unit label lies in ``[lo, hi)``."""
        a = self._seg_base[s]
        b = a + self._seg_len[s]
        i = bisect_left(self._p_lab, lo, a, b)
        return i, bisect_left(self._p_lab, hi, i, b)

    def _grow(self, s: int, need: int) -> None:
        """Make room for ``need`` more slots in segment ``s`` (shifts the later segments)."""
        free = self._seg_cap[s] - self._seg_len[s]
        if free >= need:
            return
        add = max(need - free, _MIN_GROW, self._seg_len[s] // 8)
        at = self._seg_base[s] + self._seg_cap[s]
        self._p_id[at:at] = array("q", bytes(8 * add))
        self._p_unit[at:at] = array("i", [-1]) * add
        self._p_lab[at:at] = array("q", [-1]) * add
        self._h_one[at:at] = array("q", bytes(8 * add))
        self._special[at:at] = bytes(add)
        self._seg_cap[s] += add
        for t in range(len(self._seg_base)):
            if self._seg_base[t] >= at and t != s:
                self._seg_base[t] += add

    def _take(self, s: int, a: int, b: int) -> list[Row]:
        """Remove slots ``[a, b)`` of segment ``s`` and return their rows (the tail moves down)."""
        rows = list(zip(self._p_id[a:b], self._p_unit[a:b], self._p_lab[a:b], self._h_one[a:b], self._special[a:b],
                        strict=True))  # fmt: skip
        n = b - a
        if n == 0:
            return rows
        end = self._seg_base[s] + self._seg_len[s]
        for col in (self._p_id, self._p_unit, self._p_lab, self._h_one):
            col[a : end - n] = col[b:end]
        self._special[a : end - n] = self._special[b:end]
        self._clear(end - n, end)
        self._seg_len[s] -= n
        return rows

    def _clear(self, a: int, b: int) -> None:
        n = b - a
        self._p_id[a:b] = array("q", bytes(8 * n))
        self._p_unit[a:b] = array("i", [-1]) * n
        self._p_lab[a:b] = array("q", [-1]) * n
        self._h_one[a:b] = array("q", bytes(8 * n))
        self._special[a:b] = bytes(n)

    def _put(self, s: int, rows: list[Row]) -> None:
        """Insert rows (sorted by label, then id, and contiguous in label order) into segment ``s``."""
        if not rows:
            return
        self._grow(s, len(rows))
        base, n = self._seg_base[s], len(rows)
        end = base + self._seg_len[s]
        lab0, pid0 = rows[0][2], rows[0][0]
        at = bisect_left(self._p_lab, lab0, base, end)
        while at < end and self._p_lab[at] == lab0 and self._p_id[at] < pid0:
            at += 1
        for col in (self._p_id, self._p_unit, self._p_lab, self._h_one):
            col[at + n : end + n] = col[at:end]
        self._special[at + n : end + n] = self._special[at:end]
        self._p_id[at : at + n] = array("q", [r[0] for r in rows])
        self._p_unit[at : at + n] = array("i", [r[1] for r in rows])
        self._p_lab[at : at + n] = array("q", [r[2] for r in rows])
        self._h_one[at : at + n] = array("q", [r[3] for r in rows])
        self._special[at : at + n] = bytes(r[4] for r in rows)
        self._seg_len[s] += n

    def _find_in_segment(self, s: int, lab: int, pid: int) -> int:
        a = self._seg_base[s]
        b = a + self._seg_len[s]
        i = bisect_left(self._p_lab, lab, a, b)
        j = bisect_right(self._p_lab, lab, i, b)
        for k in range(i, j):
            if self._p_id[k] == pid:
                return k
        return -1

    def _slot_of(self, pid: int) -> int:
        if not 0 <= pid < len(self._pid_unit):
            return -1
        u = self._pid_unit[pid]
        if u < 0:
            return -1
        s = self._seg_of.get((self._pid_role[pid], self._u_level[u], self._u_root[u]), -1)
        return self._find_in_segment(s, self._u_lab[u], pid) if s >= 0 else -1

    # ------------------------------------------------------------ per-unit lists
    def _kids(self, u: int) -> list[int]:
        return csr_row(self._kid, self._kid_off, self._kid_over, u)

    def _unit_pids(self, u: int) -> list[int]:
        return csr_row(self._up_pid, self._up_off, self._up_over, u)

    def subtree(self, u: int, depth: int | None = None) -> Iterator[int]:
        """``u`` and the units below it (at most ``depth`` levels down), parents before children."""
        top = self._u_level[u]
        stack = [u]
        while stack:
            v = stack.pop()
            yield v
            if depth is None or self._u_level[v] - top < depth:
                stack.extend(reversed(self._kids(v)))
