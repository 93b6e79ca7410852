"""History checker for invariants I1–I3 (docs/reliability.md).

Clients record what the server acknowledged and what they received; the
checker then proves: every acknowledged message reached every recipient (I1),
no (recipient, message) twice after dedupe by seq and one id per
(sender, client_msg_id) (I2), and each recipient's seqs rise by exactly one
(I3).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    #: (sender, client_msg_id) → message_id from every ``send-ok``.
    acked: dict[tuple[int, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    #: message_id → the persons who must receive it.
    audience: dict[int, set[int]] = field(default_factory=dict)
    #: recipient → (seq, message_id or None) in arrival order, all event kinds.
    delivered: dict[int, list[tuple[int, int | None]]] = field(default_factory=lambda: defaultdict(list))

    def send_ok(self, sender: int, client_msg_id: str, message_id: int, recipients: set[int]) -> None:
        self.acked[(sender, client_msg_id)].add(message_id)
        self.audience[message_id] = recipients

    def deliver_events(self, recipient: int, events: list[dict[str, Any]]) -> None:
        for ev in events:
            mid = ev["data"]["id"] if ev["kind"] == "message.new" else None
            self.delivered[recipient].append((ev["seq"], mid))

    def check(self) -> None:
        # I2 (server side): one server id per idempotency key.
        for key, ids in self.acked.items():
            assert len(ids) == 1, f"I2: {key} got ids {ids}"
        got: dict[int, set[int]] = defaultdict(set)
        for recipient, items in self.delivered.items():
            by_seq: dict[int, int | None] = {}
            for seq, mid in items:
                assert by_seq.get(seq, mid) == mid, f"I2/I5: seq {seq} of {recipient} carried two events"
                by_seq[seq] = mid
            seqs = sorted(by_seq)
            # I3: the stream has no gaps (it may start after 1 for a late joiner).
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"I3: gap in {recipient}'s seqs"
            mids = [m for m in by_seq.values() if m is not None]
            assert len(mids) == len(set(mids)), f"I2: a message reached {recipient} under two seqs"
            got[recipient].update(mids)
        # I1: every acknowledged message reached its whole audience.
        for mid, people in self.audience.items():
            for p in people:
                assert mid in got[p], f"I1: message {mid} never reached {p}"
