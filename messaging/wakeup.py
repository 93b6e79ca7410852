"""What travels over the broker: "these persons have these new events".

The database is the source of truth; a wake-up is a hint that also carries
the events themselves, so a connected client gets them without a read. A
lost wake-up is repaired by the gap check and the safety poll.

Events that share a payload (one chat message to its sender and recipient,
one notice to 100,000 people) are grouped, so the payload travels once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["EventGroup", "Wakeup", "event_frame"]


def event_frame(seq: int, kind: str, payload: str) -> str:
    """The client frame for one event; ``payload`` is JSON text used verbatim."""
    return f'{{"type":"event","seq":{seq},"kind":"{kind}","data":{payload}}}'


@dataclass(slots=True)
class EventGroup:
    kind: str
    payload: str
    #: (person_id, seq) pairs that received this payload.
    recipients: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class Wakeup:
    origin: str
    groups: list[EventGroup]

    def encode(self) -> bytes:
        return json.dumps(
            {"o": self.origin, "g": [[g.kind, g.payload, g.recipients] for g in self.groups]},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Wakeup:
        raw = json.loads(data)
        return cls(
            origin=str(raw["o"]),
            groups=[EventGroup(k, p, [(int(a), int(b)) for a, b in r]) for k, p, r in raw["g"]],
        )
