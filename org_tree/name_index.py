"""Distinct names with their pinyin and initials, searchable by substring without scanning them all.

Why n-gram postings (issue 18): the directory's terms are *contained in* a
name, its toneless pinyin or its initials (``伟`` in ``张伟``, ``wei`` in
``zhangwei``, ``zw``). A linear ``str.find`` over the joined names costs a pass
over tens of MiB per term at national scale (1.4 M distinct holder names), and
a term that never occurs (``sz`` in pinyin) always pays the whole pass. Here
each column keeps, for every 1-, 2- (and, for pinyin, 3-) character gram, the
ascending array of name ids containing it. A term is answered from the
shortest posting among its longest grams: when the term *is* that gram the
posting is the answer; otherwise each candidate is checked with ``in``. Ids
are visited in ascending order, so "the first ``cap`` matches" are the same
ones a scan of the joined text in id order would have found.

Exact matches (the term equals a name, a pinyin or initials) come first and
are never lost to the cap: names through a dict, pinyin and initials through
an id array sorted by that column (bisect). New names only append (ids grow),
so postings stay sorted and a live add costs its grams, not a rebuild.
"""

from __future__ import annotations

import heapq
import sys
import unicodedata
from array import array
from bisect import bisect_left, bisect_right, insort

from pypinyin import Style, lazy_pinyin
from pypinyin.constants import PHRASES_DICT

__all__ = ["Names", "fold", "pinyin_fast"]

_CHAR_PINYIN: dict[str, str] = {}

#: ``seal`` sorts at most this many ids per C call, then merges the runs in Python. Why: one
#: ``sorted`` holds the GIL from start to end, and the directory is built in a thread beside the
#: event loop: 271 k holder names (Hunan) sorted at once stalled the loop 150 ms, per column.
SORT_RUN = 16_384


def pinyin_fast(name: str) -> tuple[str, str]:
    """Toneless pinyin and initials, character by character (memoised): ``张伟`` → ("zhangwei", "zw")."""
    full, initials = [], []
    for ch in name:
        py = _CHAR_PINYIN.get(ch)
        if py is None:
            py = _CHAR_PINYIN[ch] = "".join(lazy_pinyin(ch, style=Style.NORMAL, errors="default")).lower()
        if py:
            full.append(py)
            initials.append(py[0])
    return "".join(full).replace(" ", ""), "".join(initials)


_PHRASE_PINYIN: dict[str, list[str]] = {}


def phrase_pinyin(name: str) -> tuple[str, str]:
    """The reading of ``name`` with its words read as words (长沙 → "changsha"), else ("", "").

    ``pinyin_fast`` reads a character alone, so a polyphone takes its commonest reading
    (长 → zhang: 长沙 "zhangsha", 重庆 "zhongqing", 厦门 "shamen"). Here the longest word of
    pypinyin's phrase dictionary (2-4 characters) starting at each place is read as that word,
    left to right, and the result is returned only when it differs; unit names carry both
    readings, so a place is found as it is spoken and as before. A dictionary look-up a
    place, not ``lazy_pinyin`` of the whole name: that cost 50 µs a name (a second for a
    province's unit names in the directory build), this a few.
    """
    default, _ = pinyin_fast(name)
    syllables: list[str] = []
    i, n, changed = 0, len(name), False
    while i < n:
        for size in (4, 3, 2):
            word = name[i : i + size]
            if len(word) == size and word in PHRASES_DICT:
                read = _PHRASE_PINYIN.get(word)
                if read is None:
                    read = _PHRASE_PINYIN[word] = [s.lower() for s in lazy_pinyin(word, style=Style.NORMAL)]
                syllables.extend(read)
                changed = True
                i += size
                break
        else:
            syllables.append(_CHAR_PINYIN.get(name[i]) or pinyin_fast(name[i])[0])
            i += 1
    full = "".join(syllables).replace(" ", "")
    if not changed or full == default:
        return "", ""
    return full, "".join(s[0] for s in syllables if s)


#: Surnames whose reading is not the character's commonest one (曾 is "ceng" alone, "zeng" as
#: a surname): a person's name starting with one is also read with the surname's reading.
SURNAME_READINGS = {
    "曾": "zeng", "单": "shan", "解": "xie", "仇": "qiu", "区": "ou", "查": "zha", "朴": "piao",
    "盖": "ge", "覃": "qin", "翟": "zhai", "缪": "miao", "乐": "yue", "尉": "yu", "种": "chong",
    "繁": "po", "员": "yun", "召": "shao", "句": "gou", "阚": "kan", "秘": "bi", "长": "chang",
}  # fmt: skip


def surname_pinyin(name: str) -> tuple[str, str]:
    """A person's name read with its surname's reading (曾伟 → ("zengwei", "zw")) when that differs, else ("", "")."""
    read = SURNAME_READINGS.get(name[:1])
    if read is None:
        return "", ""
    default, initials = pinyin_fast(name)
    full = read + pinyin_fast(name[1:])[0]
    if full == default:
        return "", ""
    return full, read[0] + initials[1:]


def fold(text: str) -> str:
    """The form names and queries are compared in: NFKC, so full-width Latin letters and digits
    (``ｈｅｚｈａｎｇ``, ``４１０１０５``, ``幸福ｅ家社区``) match their ASCII forms either way."""
    return unicodedata.normalize("NFKC", text)


class _Column:
    """One column (names, pinyin or initials): the strings by id, their grams' postings, ids sorted by string."""

    def __init__(self, longest_gram: int, *, sparse: bool = False) -> None:
        self.values: list[str] = []
        self.grams: dict[str, array[int]] = {}
        self.longest = longest_gram
        self.sorted_ids = array("i")
        #: Only ids with a value are sorted (a second reading: most names have none, and
        #: sorting the empty ones cost 0.3 s a column for a province's holders).
        self.sparse = sparse

    def add(self, nid: int, value: str) -> None:
        self.values.append(value)
        if not value:  # no second reading: nothing to post
            return
        grams = self.grams
        for n in range(1, self.longest + 1):
            for g in {value[i : i + n] for i in range(len(value) - n + 1)}:
                posting = grams.get(g)
                if posting is None:
                    posting = grams[g] = array("i")
                posting.append(nid)

    def seal(self) -> None:
        """Sort the ids by value (after a bulk build; later adds insert in place)."""
        n, key = len(self.values), self.values.__getitem__
        ids = [i for i, v in enumerate(self.values) if v] if self.sparse else range(n)
        n = len(ids)
        runs = [sorted(ids[lo : min(lo + SORT_RUN, n)], key=key) for lo in range(0, n, SORT_RUN)]
        if not runs:
            self.sorted_ids = array("i")
            return
        # merge keeps ties in run order, and runs are in id order: as stable as one sort
        self.sorted_ids = array("i", runs[0] if len(runs) == 1 else heapq.merge(*runs, key=key))

    def insert_sorted(self, nid: int) -> None:
        if self.values[nid] or not self.sparse:
            insort(self.sorted_ids, nid, key=self.values.__getitem__)

    def exact(self, term: str) -> array[int]:
        """Ids whose value equals ``term``, ascending."""
        key = self.values.__getitem__
        lo = bisect_left(self.sorted_ids, term, key=key)
        hi = bisect_right(self.sorted_ids, term, lo=lo, key=key)
        return self.sorted_ids[lo:hi]  # equal values keep id order: the sort is stable, inserts go right

    def containing(self, term: str, cap: int, out: dict[int, bool]) -> None:
        """Add ids whose value contains ``term`` to ``out`` (ascending) until it holds ``cap``."""
        n = min(len(term), self.longest)
        best: array[int] | None = None
        for i in range(len(term) - n + 1):
            posting = self.grams.get(term[i : i + n])
            if posting is None:
                return
            if best is None or len(posting) < len(best):
                best = posting
        if best is None:
            return
        values = self.values
        check = len(term) > n
        for nid in best:
            if len(out) >= cap:
                return
            if nid not in out and (not check or term in values[nid]):
                out[nid] = False

    def memory_bytes(self) -> int:
        postings = sum(64 + 4 * len(p) + sys.getsizeof(g) for g, p in self.grams.items())
        strings = sys.getsizeof(self.values) + sum(sys.getsizeof(s) for s in self.values)
        return postings + sys.getsizeof(self.grams) + strings + 4 * len(self.sorted_ids)


class Names:
    """Distinct names with their pinyin and initials; ``find(term, cap)`` → (name id, exact) of those containing it."""

    def __init__(self, names: list[str], *, phrases: bool = False, surnames: bool = False) -> None:
        self._id: dict[str, int] = {}
        # characters, pinyin, initials; with ``phrases`` (unit names) or ``surnames`` (persons'
        # names) also a second reading and its initials ("" where there is none: see
        # phrase_pinyin, surname_pinyin)
        self._second = phrase_pinyin if phrases else surname_pinyin if surnames else None
        second = (_Column(3, sparse=True), _Column(2, sparse=True)) if self._second else ()
        self._cols: tuple[_Column, ...] = (_Column(2), _Column(3), _Column(2), *second)
        #: the names as given (shown); the characters column holds them folded (``fold``)
        self.names: list[str] = []
        self._sealed = False
        for n in names:
            self.add(n)
        for col in self._cols:
            col.seal()
        self._sealed = True

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str) -> int:
        """The id of ``name``, added when new."""
        nid = self._id.get(name)
        if nid is None:
            nid = self._id[name] = len(self.names)
            self.names.append(name)
            key = fold(name)
            values = (key, *pinyin_fast(key), *(self._second(key) if self._second else ()))
            for col, value in zip(self._cols, values, strict=True):
                col.add(nid, value)
                if self._sealed:
                    col.insert_sorted(nid)
        return nid

    def pinyin(self, nid: int) -> tuple[str, str]:
        return self._cols[1].values[nid], self._cols[2].values[nid]

    def match(self, nid: int, term: str, folded: str, pinyin_too: bool) -> int | None:
        """0 when name ``nid`` equals ``term`` in some column, 1 when one contains it, None otherwise (as ``find``)."""
        name = self._cols[0].values[nid]
        if name == term:
            return 0
        if pinyin_too:
            spelt = [col.values[nid] for col in self._cols[1:]]
            if folded in spelt:
                return 0
            if any(folded in value for value in spelt):
                return 1
        return 1 if term in name else None

    def find(self, term: str, cap: int) -> list[tuple[int, bool]]:
        """Ids of names whose characters, pinyin or initials contain ``term``, at most ``cap``.

        Exact ones (equal to the term in some column) first, then in id order; the partial
        ones are the first by id in the column order characters, pinyin, initials.
        """
        folded = term.lower()
        out: dict[int, bool] = {}
        for nid in self._cols[0].exact(term)[:cap]:  # folded names equal to the (folded) term
            out[nid] = True
        pinyin_too = folded == term or folded.isascii()  # pinyin and initials are lower case
        if pinyin_too:
            for col in self._cols[1:]:
                for nid in col.exact(folded)[: max(cap - len(out), 0)]:
                    out[nid] = True
        self._cols[0].containing(term, cap, out)
        if pinyin_too:
            for col in self._cols[1:]:
                col.containing(folded, cap, out)
        return sorted(out.items(), key=lambda kv: (not kv[1], kv[0]))

    def memory_bytes(self) -> int:
        return sum(c.memory_bytes() for c in self._cols) + sys.getsizeof(self._id)
