"""A large notice's receipts, frozen at send time in one compact row and written after the commit.

Why: a province-wide notice has ~200,000 receipts, and writing them in the
send transaction (a COPY into a table with five indexes) took 1.6–4 s on
this machine, longer than the whole budget from send to the last connected
recipient (issue 15 item 4: ≤ 1 s). The audience must still be frozen at send
time (a later reorganisation must not change who was addressed), so the send
writes the receipt rows packed into one ``notice_pending_receipts`` row
(column arrays: 6.7 MB for 200,000 receipts, one insert of ~40 ms). After the
commit the relay writes the connected recipients' receipts together with
their events, and the lease holder then writes everyone else's in one COPY
(``relay.py``). Small notices keep their receipts in the send transaction
(``FanoutRelay.inline_receipts``), where they cost less than this detour.
"""

from __future__ import annotations

import logging
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import add, mul
from typing import Any

from org_tree.index import OrgIndex
from org_tree.resolution import REASONS, Audience

logger = logging.getLogger(__name__)

__all__ = ["PackedReceipts", "pack", "receipt_columns", "unpack"]

_VERSION = 1
_HEADER = struct.Struct("<BI")  # format version, row count


@dataclass(frozen=True, eq=False)
class PackedReceipts:
    """Receipt rows as columns: ``persons[i]`` receives for ``positions[i]`` through ``vias[i]`` in ``units[i]``."""

    persons: array[int]
    positions: array[int]
    vias: array[int]
    units: array[int]
    reasons: bytes  # codes into org_tree.resolution.REASONS

    def __len__(self) -> int:
        return len(self.persons)

    def tuples(self, notice_id: int) -> list[tuple[Any, ...]]:
        """Every row in ``fanout.RECEIPT_COLUMNS`` order (what a small notice writes in its send)."""
        reasons = map(REASONS.__getitem__, self.reasons)
        return list(zip(repeat(notice_id), self.persons, self.positions, self.vias, reasons, self.units))

    def rows(
        self, notice_id: int, keep: Callable[[int], bool], *, fanned_out: bool, at: Sequence[int] | None = None
    ) -> list[tuple[Any, ...]]:
        """Rows (of the row numbers ``at``, default all) of the persons ``keep`` accepts.

        Each in ``RECEIPT_COLUMNS`` order plus ``fanned_out``, then the row number
        (which orders a person's rows as the audience did). The persons are
        filtered at C speed when ``keep`` is a builtin (``set.__contains__``):
        this runs over all ~200,000 rows for each connected-first write.
        """
        persons = self.persons
        if at is None:
            picked: Iterable[int] = compress(range(len(persons)), map(keep, persons))
        else:
            picked = [i for i in at if keep(persons[i])]
        pos, via, unit, reason = self.positions, self.vias, self.units, self.reasons
        return [(notice_id, persons[i], pos[i], via[i], REASONS[reason[i]], unit[i], fanned_out, i) for i in picked]

    def person_chunks(self, size: int) -> list[list[int]]:
        """Row numbers in ascending person order, cut into runs of about ``size`` rows; a person's rows stay in one."""
        persons = self.persons
        order = sorted(range(len(persons)), key=persons.__getitem__)
        out: list[list[int]] = []
        run: list[int] = []
        for i in order:
            if len(run) >= size and persons[run[-1]] != persons[i]:
                out.append(run)
                run = []
            run.append(i)
        if run:
            out.append(run)
        return out


def _column(values: Sequence[int]) -> array[int]:
    """A copy of an id column as ``array('q')``: one memcpy from the audience's arrays."""
    if isinstance(values, memoryview) and values.format == "q" and values.c_contiguous:
        out = array("q")
        out.frombytes(values.cast("B"))
        return out
    return array("q", values)


def receipt_columns(index: OrgIndex, audience: Audience) -> PackedReceipts:
    """The receipts of ``audience``: one per distinct (person, addressed position), as columns.

    Why columns: a province-wide audience has ~200,000 entries, and a tuple (or a
    few) per entry was most of the send's own time; the columns are copied from the
    audience's arrays, unit ids come from one pass over the index, and duplicates are
    looked for with one set of integer keys (an exact pass runs only if it finds any).
    """
    persons, positions = _column(audience.person_ids), _column(audience.position_ids)
    vias = _column(audience.via_position_ids)
    codes = audience.reason_codes
    reasons = bytes(codes) if isinstance(codes, memoryview) and codes.itemsize == 1 else bytes(array("b", codes))
    units = array("q", index.unit_ids_of_positions(positions))
    keys = set(map(add, map(mul, persons, repeat(1 << 40)), positions))  # distinct pairs give distinct keys
    if len(keys) == len(persons):
        return PackedReceipts(persons, positions, vias, units, reasons)
    seen: set[tuple[int, int]] = set()
    keep = []
    for i, pair in enumerate(zip(persons, positions, strict=True)):
        if pair not in seen:
            seen.add(pair)
            keep.append(i)
    p, q, v, u = (array("q", map(c.__getitem__, keep)) for c in (persons, positions, vias, units))
    return PackedReceipts(p, q, v, u, bytes(map(reasons.__getitem__, keep)))


def pack(packed: PackedReceipts) -> bytes:
    """The stored form of ``packed``: a header, then the columns little-endian, back to back.

    Not compressed: zlib took ~50 ms of the sending process's CPU for ~60 % less
    data, and storing the ~6.7 MB uncompressed (``STORAGE EXTERNAL`` on
    PostgreSQL) costs the database about as long as storing the compressed bytes.
    """
    cols = [packed.persons, packed.positions, packed.vias, packed.units]
    if sys.byteorder != "little":  # the stored form is little-endian whatever the writer
        cols = [array("q", c) for c in cols]
        for c in cols:
            c.byteswap()
    return b"".join([_HEADER.pack(_VERSION, len(packed)), *(c.tobytes() for c in cols), packed.reasons])


def unpack(data: bytes) -> PackedReceipts:
    """The columns :func:`pack` stored.

    Raises:
        ValueError: not a packed receipt row of this format.
    """
    raw = memoryview(data)
    version, n = _HEADER.unpack_from(raw)
    if version != _VERSION or len(raw) != _HEADER.size + n * 33:
        raise ValueError(f"not a packed receipt row (version {version}, {len(raw)} bytes for {n} rows)")
    cols = []
    at = _HEADER.size
    for _ in range(4):
        col = array("q")
        col.frombytes(raw[at : at + 8 * n])
        if sys.byteorder != "little":
            col.byteswap()
        cols.append(col)
        at += 8 * n
    return PackedReceipts(cols[0], cols[1], cols[2], cols[3], bytes(raw[at : at + n]))
