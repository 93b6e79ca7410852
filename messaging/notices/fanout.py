"""From one resolution to receipt rows and labelled ``notice.new`` events (pure, no I/O).

A person who receives through several addressed positions gets one event,
labelled with every one of them. Events with an identical payload (e.g. the
members of one pool position) share one ``NewEvent`` so the payload travels
once in the wake-up. Every payload is built through its model in
``messaging.shapes`` (``NoticeNew``, ``NoticeRemind``, ``NoticeLabel`` …),
the one definition the AsyncAPI document is generated from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kernel.wire import dumps, loads
from messaging import shapes
from messaging.events import NewEvent
from org_tree.index import OrgIndex

logger = logging.getLogger(__name__)

__all__ = [
    "Label",
    "NoticeHead",
    "RECEIPT_COLUMNS",
    "label_of",
    "notice_events",
    "notice_payloads",
]

#: Column order of receipt rows (``bulk_insert`` / COPY; ``deferred.PackedReceipts.tuples``).
RECEIPT_COLUMNS = ("notice_id", "person_id", "position_id", "via_position_id", "reason", "unit_id")

Label = tuple[int, int, str]  # (addressed position, via position, reason)


@dataclass(frozen=True, slots=True)
class NoticeHead:
    """What a recipient's event says about the notice (the body is fetched on open)."""

    id: int
    title: str
    priority: str
    ack_required: bool
    deadline: datetime | None
    created_at: datetime
    sender_person_id: int
    sender_position_id: int

    def wire(self) -> shapes.NoticeHead:
        """The head as every notice event and view starts with."""
        return shapes.NoticeHead(
            notice_id=self.id,
            title=self.title,
            priority=self.priority,  # type: ignore[arg-type]  # checked by the model
            ack_required=self.ack_required,
            deadline=self.deadline,
            created_at=self.created_at,
            sender=shapes.NoticeSender(person_id=self.sender_person_id, position_id=self.sender_position_id),
        )

    def as_dict(self) -> dict[str, Any]:
        """The head as JSON values (instants as RFC 3339 text), for views that add their own fields."""
        out: dict[str, Any] = loads(self.wire().text())
        return out


def label_of(index: OrgIndex, label: Label) -> shapes.NoticeLabel:
    """One position label as clients show it: role and unit names (from the sender's index snapshot)."""
    pos, via, reason = label
    out: dict[str, Any] = {"position_id": pos}
    k = index.find_slot(pos)
    if k >= 0:
        out["role"] = index.position_role(k).name
        out["unit"] = index.unit_name(index.position_unit(k))
    if reason != "holder":  # a vacancy fallback: a deputy or acting holder of the position itself too
        out["via_position_id"] = via
        out["reason"] = reason
    return shapes.NoticeLabel(**out)


def notice_events(
    kind: str, head: NoticeHead, labels: dict[int, list[Label]], index: OrgIndex, extra: dict[str, Any] | None = None
) -> list[NewEvent]:
    """One ``notice.new`` or ``notice.remind`` per person, grouped by identical payload.

    ``extra``: the event's own fields (``transferred``; ``step``; ``manual``, ``by``, ``unit_id``).
    """
    shape = shapes.NoticeRemind if kind == "notice.remind" else shapes.NoticeNew
    base = {**dict(head.wire()), **(extra or {})}
    by_payload: dict[tuple[Label, ...], list[int]] = {}
    for person, lbls in labels.items():
        by_payload.setdefault(tuple(lbls), []).append(person)
    out: list[NewEvent] = []
    for key, persons in by_payload.items():
        data = shape(**base, positions=[label_of(index, lb) for lb in key])
        out.append(NewEvent(kind, data.text(), persons))
    return out


def _dumps(value: Any) -> str:
    return dumps(value)


def notice_payloads(head: NoticeHead, labels: dict[int, list[Label]], index: OrgIndex) -> list[tuple[int, str]]:
    """``(person, payload)`` per person, the same JSON :func:`notice_events` builds, for ``append_bulk``.

    Why a string template: a province-wide notice has ~200,000 recipients,
    each with their own position labels, and a ``json.dumps`` of a fresh dict
    per person was a large part of the send transaction. The notice head is
    encoded once; each label fragment is assembled from role and unit names
    encoded once per role and per unit.
    """
    prefix = head.wire().text()[:-1] + ',"positions":['
    role_js: dict[int, str] = {}
    unit_js: dict[int, str] = {}
    role_and_unit = index.role_and_unit

    def fragment(label: Label) -> str:
        pos, via, reason = label
        found = role_and_unit(pos)
        if found is None:
            out = f'{{"position_id":{pos}'
        else:
            r, u = found
            rj = role_js.get(r)
            if rj is None:
                role = index.roles.get(r)
                rj = role_js[r] = _dumps(role.name if role is not None else None)
            uj = unit_js.get(u)
            if uj is None:
                uj = unit_js[u] = _dumps(index.unit_name(u))
            out = f'{{"position_id":{pos},"role":{rj},"unit":{uj}'
        if reason != "holder":
            out += f',"via_position_id":{via},"reason":{_dumps(reason)}'
        return out + "}"

    return [
        (person, prefix + (fragment(lbls[0]) if len(lbls) == 1 else ",".join(map(fragment, lbls))) + "]}")
        for person, lbls in labels.items()
    ]


def shared_event(kind: str, data: shapes.Shape, persons: Iterable[int]) -> NewEvent:
    """One event of the same ``data`` to each of ``persons``."""
    return NewEvent(kind, data.text(), sorted(set(persons)))


def positions_of(labels: Sequence[Label]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(lb[0] for lb in labels))
