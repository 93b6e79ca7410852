"""What travels over the broker: "these persons have these new events".

The database is the source of truth; a wake-up is a hint that also carries
the events themselves, so a connected client gets them without a read. A
lost wake-up is repaired by the gap check and the safety poll.

Events that share a payload (one chat message to its sender and recipient,
one notice to 100,000 people) are grouped, so the payload travels once.
"""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass, field
from itertools import accumulate

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
    """One broker message: a JSON header line, then the payloads' UTF-8 bytes back to back.

    Why not one JSON document: a province-wide notice carries ~200,000
    distinct payloads (each recipient's own position labels), and every
    process would parse all of them to deliver to the few thousand it holds.
    The header lists ``(person, seq, payload index)`` as plain integers and
    each payload's byte length, so a receiver reads the integers and decodes
    only the payloads of its own recipients (``decode(data, only=…)``).
    """

    origin: str
    groups: list[EventGroup]

    def encode(self) -> bytes:
        kinds: list[str] = []
        lengths: list[int] = []
        blobs: list[bytes] = []
        flat: list[int] = []
        for i, g in enumerate(self.groups):
            b = g.payload.encode()
            kinds.append(g.kind)
            lengths.append(len(b))
            blobs.append(b)
            for pid, seq in g.recipients:
                flat += (pid, seq, i)
        head = json.dumps({"o": self.origin, "k": kinds, "n": lengths, "r": flat}, separators=(",", ":"))
        return head.encode() + b"\n" + b"".join(blobs)

    @classmethod
    def decode(cls, data: bytes, only: Container[int] | None = None, *, skip_origin: str | None = None) -> Wakeup:
        """Parse a wake-up; with ``only``, keep just the recipients in it (and their payloads).

        A wake-up from ``skip_origin`` (the receiver's own, already delivered
        locally) comes back without groups, its payloads not decoded.

        Raises:
            ValueError: not a wake-up (bad JSON, bad UTF-8, inconsistent lengths).
        """
        head_bytes, _, blob = bytes(data).partition(b"\n")
        head = json.loads(head_bytes)
        if skip_origin is not None and head["o"] == skip_origin:
            return cls(origin=str(head["o"]), groups=[])
        kinds, lengths, flat = head["k"], head["n"], head["r"]
        if len(kinds) != len(lengths) or len(flat) % 3 or sum(lengths) != len(blob):
            raise ValueError("inconsistent wake-up")
        offsets = [0, *accumulate(lengths)]
        picked: dict[int, EventGroup] = {}
        for j in range(0, len(flat), 3):
            pid = flat[j]
            if only is not None and pid not in only:
                continue
            i = flat[j + 2]
            g = picked.get(i)
            if g is None:
                g = picked[i] = EventGroup(str(kinds[i]), blob[offsets[i] : offsets[i + 1]].decode())
            g.recipients.append((int(pid), int(flat[j + 1])))
        return cls(origin=str(head["o"]), groups=[picked[i] for i in sorted(picked)])
