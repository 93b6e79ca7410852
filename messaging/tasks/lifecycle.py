"""The task lifecycle as a pure state machine: which action is allowed from which state, by whom.

States::

    created ──accept──► accepted ──start──► in_progress ──resolve──► resolved ──verify──► verified ──close──► closed
       ▲  │               │  (resolve directly from accepted is allowed)   │
       │  └──reject───────┴──► escalated up the tree (back to created)      └──return──► in_progress
       └──reassign / escalate (deadline)        cancel: any open state ──► cancelled

Sides, not persons, decide: the **owner** side is whoever holds the owning
position (or, for a shared task still in ``created``, one of its pool); the
**creator** side holds the position the task was created as (for a report,
the reporting grid position). The **system** side is the deadline timer.

Nothing here touches the database; ``messaging.tasks.service`` applies a
``Step`` with a version-checked update.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from kernel.errors import Conflict, ErrorCode, Forbidden

logger = logging.getLogger(__name__)

__all__ = ["ACTIONS", "CLIENT_ACTIONS", "OPEN_STATES", "Action", "Side", "State", "Step", "decide", "stale"]


class State(StrEnum):
    CREATED = "created"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    VERIFIED = "verified"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Action(StrEnum):
    CREATE = "create"
    ACCEPT = "accept"
    START = "start"
    RESOLVE = "resolve"
    VERIFY = "verify"
    CLOSE = "close"
    RETURN = "return"
    REJECT = "reject"
    REASSIGN = "reassign"
    ESCALATE = "escalate"
    CANCEL = "cancel"
    COMMENT = "comment"


class Side(StrEnum):
    OWNER = "owner"
    CREATOR = "creator"
    SYSTEM = "system"


OPEN_STATES = frozenset({State.CREATED, State.ACCEPTED, State.IN_PROGRESS, State.RESOLVED, State.VERIFIED})
_ALL_OPEN = tuple(OPEN_STATES)


@dataclass(frozen=True, slots=True)
class Rule:
    sources: tuple[State, ...]
    #: None: the state does not change (comment) or is decided by the caller (escalation → created).
    target: State | None
    sides: frozenset[Side]


#: The whole table. Reject, reassign and escalate return the task to ``created`` under a new owner.
ACTIONS: dict[Action, Rule] = {
    Action.ACCEPT: Rule((State.CREATED,), State.ACCEPTED, frozenset({Side.OWNER})),
    Action.START: Rule((State.ACCEPTED,), State.IN_PROGRESS, frozenset({Side.OWNER})),
    Action.RESOLVE: Rule((State.ACCEPTED, State.IN_PROGRESS), State.RESOLVED, frozenset({Side.OWNER})),
    Action.VERIFY: Rule((State.RESOLVED,), State.VERIFIED, frozenset({Side.CREATOR})),
    Action.CLOSE: Rule((State.VERIFIED,), State.CLOSED, frozenset({Side.CREATOR})),
    Action.RETURN: Rule((State.RESOLVED, State.VERIFIED), State.IN_PROGRESS, frozenset({Side.CREATOR})),
    Action.REJECT: Rule((State.CREATED, State.ACCEPTED), State.CREATED, frozenset({Side.OWNER})),
    Action.REASSIGN: Rule(
        (State.CREATED, State.ACCEPTED, State.IN_PROGRESS), State.CREATED, frozenset({Side.CREATOR})
    ),  # fmt: skip
    Action.ESCALATE: Rule(
        (State.CREATED, State.ACCEPTED, State.IN_PROGRESS), State.CREATED, frozenset({Side.SYSTEM})
    ),  # fmt: skip
    Action.CANCEL: Rule(
        (State.CREATED, State.ACCEPTED, State.IN_PROGRESS, State.RESOLVED, State.VERIFIED),
        State.CANCELLED,
        frozenset({Side.CREATOR}),
    ),  # fmt: skip
    Action.COMMENT: Rule(_ALL_OPEN, None, frozenset({Side.OWNER, Side.CREATOR})),
}

#: Actions a client may request over the API (create and escalate are the service's own).
CLIENT_ACTIONS = frozenset(a for a in ACTIONS if Side.SYSTEM not in ACTIONS[a].sides)


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    from_state: State
    to_state: State
    side: Side


def stale(task_id: int, seen: int, current: int) -> Conflict:
    """The error for a transition based on an old read: the client must reload and decide again."""
    return Conflict(
        "the task changed since you read it; reload it and try again",
        code=ErrorCode.STALE_VERSION,
        data={"task_id": task_id, "version": current, "your_version": seen},
    )


def decide(state: State, action: Action, sides: frozenset[Side]) -> Step:
    """The step ``action`` takes from ``state`` for an actor on ``sides``.

    Raises:
        Forbidden: the actor is on none of the sides allowed to take the action.
        Conflict: ``INVALID_TRANSITION``, the action is not allowed from ``state``
            (also for a finished task).
    """
    rule = ACTIONS[action]
    allowed = rule.sides & sides
    if not allowed:
        raise Forbidden(
            f"only the {'/'.join(sorted(rule.sides))} side may {action.value} this task",
            data={"action": action.value, "allowed_sides": sorted(rule.sides)},
        )
    if state not in rule.sources:
        raise Conflict(
            f"cannot {action.value} a task that is {state.value}",
            code=ErrorCode.INVALID_TRANSITION,
            data={"action": action.value, "state": state.value, "allowed_from": [s.value for s in rule.sources]},
        )
    side = Side.OWNER if Side.OWNER in allowed else next(iter(sorted(allowed)))
    return Step(action, state, rule.target or state, side)
