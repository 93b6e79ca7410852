"""A 找岗位 term evaluated inside the few slots earlier terms left: a key per slot, no caps.

Why (issue 18): in ``金桂村 张伟`` or ``dqccwh sz`` the first term leaves a few
dozen positions, yet the second, evaluated over the whole tree, expands up to
2,000 persons and 300 units before the two are intersected — and its caps can
even drop the very positions the first term kept. Inside a small scope it is
cheaper, and exact, to ask each slot whether the term matches it.

The key is the one ``org_tree.search`` gives the same slot from the whole tree
(docs/directory.md): the smallest of

* role: ``(inexact, 0, level)`` when the term is in the role's name, key, pinyin
  or initials;
* unit: the slot's unit and those above it that match; with an exact one,
  ``(0, level - level of the highest exact one, level)``, else
  ``(1, level - level of the highest matching one, level)`` — what taking the
  highest matches first and skipping their subtrees gives; a code term
  (:func:`is_code_term`) matches a unit's code exactly and nothing else of units;
* holder: ``(inexact, 0, level)`` when a current holder's name, pinyin or
  initials holds the term — taken from the term's holder matches over the whole
  tree when those were all expanded (a rare name: cheap), else asked per slot.
"""

from __future__ import annotations

from org_tree.directory import Directory
from org_tree.index import OrgIndex
from org_tree.selectors import is_unit_code

__all__ = ["Key", "ScopedTerm", "is_code_term"]

Key = tuple[int, int, int]  # (inexact, depth below the matched unit, level)


def is_code_term(index: OrgIndex, term: str) -> bool:
    """Whether ``term`` is read as a unit code: digits (an NBS code, found or not), or
    ASCII letters and digits that are the code of a unit (one created through the API
    is ``<parent code>x<NNN>``, docs/org-structure.md); anything else is a name."""
    if term.isdigit():
        return True
    return is_unit_code(term) and any(c.isdigit() for c in term) and index.find_unit_code(term) >= 0


class ScopedTerm:
    """``key(slot)`` for one term; memoised per unit and per name, so a scope costs its slots."""

    def __init__(
        self, index: OrgIndex, directory: Directory, term: str, roles: dict[int, int], holders: dict[int, int] | None
    ) -> None:
        self.idx, self.d, self.term = index, directory, term
        self.folded = term.lower()
        self.pinyin_too = self.folded == term or self.folded.isascii()
        self.digits = is_code_term(index, term)
        self.roles = roles  # role id → inexact, for the roles the term matches
        self.holders = holders  # slot → inexact, when the holder matches were all expanded; else asked per slot
        self._chain: dict[int, tuple[int, int]] = {}  # unit → (level of highest exact, of highest match); 0: none
        self._person: dict[int, int | None] = {}  # person name id → inexact, None: no match

    def key(self, k: int) -> Key | None:
        idx = self.idx
        u = idx.position_unit(k)
        level = idx.unit_level(u)
        best: Key | None = None
        ie = self.roles.get(idx.position_role_id(k))
        if ie is not None:
            best = (ie, 0, level)
        exact_top, match_top = self._unit_chain(u)
        if exact_top:
            cand: Key = (0, level - exact_top, level)
            best = cand if best is None or cand < best else best
        elif match_top:
            cand = (1, level - match_top, level)
            best = cand if best is None or cand < best else best
        if self.holders is not None:
            ie = self.holders.get(k)
            if ie is not None:
                cand = (ie, 0, level)
                best = cand if best is None or cand < best else best
            return best
        for person in (*idx.primary_holders(k), *(p for p, _kind in idx.alternate_holders(k))):
            ie = self._holder(person)
            if ie is not None:
                cand = (ie, 0, level)
                best = cand if best is None or cand < best else best
        return best

    def _unit_chain(self, u: int) -> tuple[int, int]:
        got = self._chain.get(u)
        if got is None:
            idx = self.idx
            p = idx.parent(u)
            above_exact, above_match = self._unit_chain(p) if p >= 0 else (0, 0)
            m = self._unit_match(u)
            level = idx.unit_level(u)
            got = (above_exact or (level if m == 0 else 0), above_match or (level if m is not None else 0))
            self._chain[u] = got
        return got

    def _unit_match(self, u: int) -> int | None:
        if self.digits:
            return 0 if self.idx.unit_code(u) == self.term else None
        nid = self.d.unit_name_id(u)
        if nid < 0:
            return None
        return self.d.unit_names.match(nid, self.term, self.folded, self.pinyin_too)

    def _holder(self, person: int) -> int | None:
        nid = self.d.person_name_id(person)
        if nid < 0:
            return None
        if nid not in self._person:
            self._person[nid] = self.d.person_names.match(nid, self.term, self.folded, self.pinyin_too)
        return self._person[nid]
