"""Structural edits of the org index in place: units, positions, roles, holders.

Why in place: a rebuild of the national tree takes about a minute and a
second copy of a 2 GiB index; an edit touches one subtree. Each method here
costs time proportional to the subtree it changes (plus a ``memmove`` inside
the touched segments, see ``org_tree.index_base``), and leaves the index
exactly as a fresh build of the changed tree would answer (a property test
compares the two after random edit sequences).

Callers: ``org_tree.holder`` applies the org change log with these, in version
order, in every process. Nothing here talks to the database.
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_left, insort
from collections.abc import Sequence

from org_tree.index_base import IndexColumns, RoleInfo, Row, slack_of

logger = logging.getLogger(__name__)

__all__ = ["IndexPatches"]

_ROOT_SPAN = 4096  # labels a new root (or a root that ran out of room) gets beyond its layout


class IndexPatches(IndexColumns):
    """The in-place edits (see the module docstring)."""

    relabels = 0  # local renumbers so far (a gap ran out), for tests and benchmarks

    # ------------------------------------------------------------------ roles
    def set_role(self, info: RoleInfo) -> None:
        """Add or replace a role (rename, new jurisdiction rule): O(roles)."""
        self.roles[info.id] = info
        self.role_by_name = {}
        for r in sorted(self.roles.values(), key=lambda r: r.id):
            self.role_by_name.setdefault(r.key, r.id)
            self.role_by_name.setdefault(r.name, r.id)
        self._memo = {}

    # ---------------------------------------------------------------- holders
    def _set_primaries(self, k: int, primaries: Sequence[int]) -> None:
        pid = self._p_id[k]
        if len(primaries) == 1:
            self._h_one[k] = primaries[0]
            self._special[k] = 0
            self._multi.pop(pid, None)
        else:
            self._h_one[k] = 0
            self._special[k] = 1
            if primaries:
                self._multi[pid] = tuple(primaries)
            else:
                self._multi.pop(pid, None)

    def patch_holders(self, holders: dict[int, tuple[list[int], list[tuple[int, str]]]], version: int) -> None:
        """Replace the holders of some positions (position id → (primaries, alternates))."""
        for pos_id, (primary, alternates) in holders.items():
            k = self._slot_of(pos_id)
            if k < 0:
                continue
            self._set_primaries(k, primary)
            if alternates:
                self._alternates[pos_id] = tuple(alternates)
            else:
                self._alternates.pop(pos_id, None)
        self._memo = {}
        self.version = version

    # ------------------------------------------------------------------ units
    def _unit_by_code(self, code: str) -> int:
        over = self._code_over.get(code)
        if over is not None:
            return over
        i = bisect_left(self._codes_sorted, code)
        if i < len(self._codes_sorted) and self._codes_sorted[i] == code:
            u = self._codes_u[i]
            return -1 if self._u_dead[u] else int(u)
        return -1

    def _set_kids(self, u: int, kids: list[int]) -> None:
        self._kid_over[u] = kids

    def _attach(self, p: int, u: int) -> None:
        kids = list(self._kids(p))
        codes = [self._u_code[c] for c in kids]
        kids.insert(bisect_left(codes, self._u_code[u]), u)
        self._set_kids(p, kids)

    def _detach(self, p: int, u: int) -> None:
        self._set_kids(p, [c for c in self._kids(p) if c != u])

    def _tails(self, u: int) -> dict[int, int]:
        """The free tail of every unit in ``u``'s subtree that has one (what a renumber keeps, see ``_room``)."""
        out = {}
        for v in self.subtree(u):
            tail = self._u_lab_end[v] - self._u_free[v]
            if tail > 0:
                out[v] = int(tail)
        return out

    def _room(self, v: int, size: int, tails: dict[int, int] | None) -> int:
        """Tail room of ``v`` after a renumber: its slack, or the tail it had (at most 4 × slack + its size).

        Why keep a tail: a unit moved away gave its labels back to it; a compacting renumber
        elsewhere under the same ancestor would take them, and moving the unit back would
        renumber again — back-and-forth moves renumbered a city or province every time.
        """
        slack = slack_of(self._u_level[v], size)
        if not tails:
            return slack
        return max(slack, min(tails.get(v, 0), 4 * slack + size))

    def _layout_len(self, u: int, extra: dict[int, int], tails: dict[int, int] | None = None) -> int:
        """Labels a re-spread of ``u``'s subtree takes (``extra``: more room at some units' tails)."""
        total = 0
        sizes: dict[int, int] = {}
        walk = list(self.subtree(u))
        for v in reversed(walk):
            sizes[v] = 1 + sum(sizes[c] for c in self._kids(v))
        for v in walk:
            total += 1 + self._room(v, sizes[v], tails) + extra.get(v, 0)
        return total

    def _respread(self, top: int, start: int, extra: dict[int, int], tails: dict[int, int] | None = None) -> int:
        """Relabel ``top``'s subtree from ``start``, keeping its label order; returns the next free label."""
        sizes: dict[int, int] = {}
        walk = list(self.subtree(top))
        for v in reversed(walk):
            sizes[v] = 1 + sum(sizes[c] for c in self._kids(v))
        counter = start
        stack: list[int] = [~top]
        while stack:
            item = stack.pop()
            if item >= 0:
                self._u_free[item] = counter
                counter += self._room(item, sizes[item], tails) + extra.get(item, 0)
                self._u_lab_end[item] = counter
                continue
            v = ~item
            self._u_lab[v] = counter
            counter += 1
            p = self._u_parent[v]
            self._u_root[v] = self._u_root[p] if p >= 0 else v
            stack.append(v)
            stack.extend(~c for c in reversed(sorted(self._kids(v), key=self._u_lab.__getitem__)))
        return counter

    def _relabel_positions(self, root: int, lo: int, hi: int) -> None:
        """After an order-keeping relabel of the units whose old labels were ``[lo, hi)``: fix the slots' labels."""
        for s in self._segs_by_root.get(root, ()):
            a, b = self._seg_span(s, lo, hi)
            for k in range(a, b):
                self._p_lab[k] = self._u_lab[self._p_unit[k]]

    def _alloc(self, p: int, span: int) -> int:
        """``span`` free labels at the tail of ``p``'s interval, renumbering locally when the gap ran out."""
        if self._u_lab_end[p] - self._u_free[p] >= span:
            x = self._u_free[p]
            self._u_free[p] += span
            return int(x)
        self.relabels += 1
        a = p
        while True:
            tails = self._tails(a)
            need = self._layout_len(a, {p: span}, tails)
            if need <= self._u_lab_end[a] - self._u_lab[a] or self._u_parent[a] < 0:
                break
            a = self._u_parent[a]
        old_lo, old_hi, root = self._u_lab[a], self._u_lab_end[a], self._u_root[a]
        if need <= old_hi - old_lo:
            self._respread(a, old_lo, {p: span}, tails)
            self._u_lab_end[a] = old_hi  # keep the interval: what is left over widens its tail
        else:  # a root without room: move its whole subtree past the end of the label space
            start = self._next_label
            self._next_label = self._respread(a, start, {p: span}, tails) + _ROOT_SPAN
            self._u_lab_end[a] = self._next_label
        self._relabel_positions(root, old_lo, old_hi)
        x = self._u_free[p]
        self._u_free[p] += span
        return int(x)

    def add_unit(self, unit_id: int, parent: int, level: int, code: str, name: str) -> int:
        """A new unit under handle ``parent`` (-1: a new root); returns its handle."""
        u = len(self._u_id)
        self._u_id.append(unit_id)
        self._u_parent.append(parent)
        self._u_level.append(level)
        self._u_dead.append(0)
        self._u_code.append(code)
        self._u_name.append(name)
        self._head_pid.append(0)
        self._u_root.append(self._u_root[parent] if parent >= 0 else u)
        span = 1 + slack_of(level, 1)
        for col in (self._u_lab, self._u_lab_end, self._u_free):
            col.append(0)
        self._set_kids(u, [])
        self._up_over[u] = []
        if parent >= 0:
            x = self._alloc(parent, span)
            self._attach(parent, u)
        else:
            x, span = self._next_label, _ROOT_SPAN
            self._next_label += span
        self._u_lab[u], self._u_free[u], self._u_lab_end[u] = x, x + 1, x + span
        if unit_id >= len(self._u_of_id):
            self._u_of_id.extend(array("i", [-1]) * (unit_id + 1 - len(self._u_of_id)))
        self._u_of_id[unit_id] = u
        self._code_over[code] = u
        self._memo = {}
        return u

    def rename_unit(self, u: int, name: str) -> None:
        self._u_name[u] = name

    def _take_subtree_positions(self, u: int) -> dict[tuple[int, int], list[Row]]:
        """Remove the positions of ``u``'s subtree from their segments: (role, level) → rows."""
        out: dict[tuple[int, int], list[Row]] = {}
        lo, hi = self._u_lab[u], self._u_lab_end[u]
        for s in self._segs_by_root.get(self._u_root[u], ()):
            a, b = self._seg_span(s, lo, hi)
            if a < b:
                role, level, _root = self._seg_key[s]
                out.setdefault((role, level), []).extend(self._take(s, a, b))
        return out

    def move_unit(self, u: int, new_parent: int) -> None:
        """Move ``u`` with its subtree under ``new_parent`` (one level above it)."""
        rows = self._take_subtree_positions(u)
        old = self._u_parent[u]
        if old >= 0:
            self._detach(old, u)
            if self._u_lab_end[u] == self._u_free[old]:  # it was the last taken from the tail: give it back
                self._u_free[old] = self._u_lab[u]
        self._u_parent[u] = new_parent
        span = self._layout_len(u, {})
        x = self._alloc(new_parent, span)
        self._respread(u, x, {})
        self._attach(new_parent, u)
        root = self._u_root[u]
        for (role, level), got in rows.items():
            fixed = sorted(((r[0], r[1], int(self._u_lab[r[1]]), r[3], r[4]) for r in got), key=lambda r: (r[2], r[0]))
            self._put(self._segment(role, level, root, create=True), fixed)
        self._memo = {}

    def retire_unit(self, u: int) -> list[int]:
        """Retire ``u`` with its subtree; returns the position ids that went with it."""
        rows = self._take_subtree_positions(u)
        gone = [r[0] for got in rows.values() for r in got]
        for pid in gone:
            self._forget_position(pid)
        p = self._u_parent[u]
        if p >= 0:
            self._detach(p, u)
        for v in list(self.subtree(u)):
            self._u_dead[v] = 1
            self._u_of_id[self._u_id[v]] = -1
            self._code_over[self._u_code[v]] = -1
            self._up_over[v] = []
            self._head_pid[v] = 0
        self._memo = {}
        return gone

    # -------------------------------------------------------------- positions
    def _forget_position(self, pid: int) -> None:
        self._pid_unit[pid] = -1
        self._multi.pop(pid, None)
        self._alternates.pop(pid, None)

    def _reset_head(self, u: int) -> None:
        heads = [p for p in self._unit_pids(u) if self.roles[self._pid_role[p]].is_head]
        self._head_pid[u] = min(heads, default=0)

    def add_position(self, pid: int, u: int, role_id: int, title: str | None = None) -> None:
        """A new (vacant) position of ``role_id`` in unit ``u`` (``title``: as it was created with)."""
        if title is not None:
            self._titles[pid] = title
        if pid >= len(self._pid_unit):
            grow = pid + 1 - len(self._pid_unit)
            self._pid_unit.extend(array("i", [-1]) * grow)
            self._pid_role.extend(array("i", [0]) * grow)
        self._pid_unit[pid] = u
        self._pid_role[pid] = role_id
        s = self._segment(role_id, self._u_level[u], self._u_root[u], create=True)
        self._put(s, [(pid, u, int(self._u_lab[u]), 0, 1)])
        pids = list(self._unit_pids(u))
        insort(pids, pid)
        self._up_over[u] = pids
        self._reset_head(u)
        self._memo = {}

    def _take_position(self, pid: int) -> Row | None:
        k = self._slot_of(pid)
        if k < 0:
            return None
        u = self._pid_unit[pid]
        s = self._segment(self._pid_role[pid], self._u_level[u], self._u_root[u])
        row = self._take(s, k, k + 1)[0]
        self._up_over[u] = [p for p in self._unit_pids(u) if p != pid]
        self._reset_head(u)
        return row

    def retire_position(self, pid: int) -> bool:
        """Remove a position; False when it was not in the tree."""
        if self._take_position(pid) is None:
            return False
        self._forget_position(pid)
        self._memo = {}
        return True

    def move_position(self, pid: int, u: int) -> None:
        """Move a position (with its holders) to unit ``u`` of the same level."""
        row = self._take_position(pid)
        if row is None:
            return
        self._pid_unit[pid] = u
        s = self._segment(self._pid_role[pid], self._u_level[u], self._u_root[u], create=True)
        self._put(s, [(pid, u, int(self._u_lab[u]), row[3], row[4])])
        pids = list(self._unit_pids(u))
        insort(pids, pid)
        self._up_over[u] = pids
        self._reset_head(u)
        self._memo = {}

    def merge_units(self, source: int, into: int) -> list[int]:
        """Move ``source``'s children and positions to ``into`` (same level) and retire ``source``.

        Returns the position ids that moved.
        """
        for c in list(self._kids(source)):
            self.move_unit(c, into)
        moved = list(self._unit_pids(source))
        for pid in moved:
            self.move_position(pid, into)
        self.retire_unit(source)
        return moved
