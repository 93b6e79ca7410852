"""The pure state machine: every action from every state, by every side."""

from __future__ import annotations

import pytest

from kernel.errors import Conflict, ErrorCode, Forbidden
from messaging.tasks.lifecycle import ACTIONS, Action, Side, State, decide

OWNER, CREATOR, SYSTEM = frozenset({Side.OWNER}), frozenset({Side.CREATOR}), frozenset({Side.SYSTEM})


def test_happy_path_walks_to_closed() -> None:
    s = State.CREATED
    for action, side in [
        (Action.ACCEPT, OWNER),
        (Action.START, OWNER),
        (Action.RESOLVE, OWNER),
        (Action.VERIFY, CREATOR),
        (Action.CLOSE, CREATOR),
    ]:
        s = decide(s, action, side).to_state
    assert s == State.CLOSED


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_cell_of_the_table(state: State, action: Action) -> None:
    rule = ACTIONS[action]
    for sides in (OWNER, CREATOR, SYSTEM):
        allowed_side = bool(rule.sides & sides)
        if not allowed_side:
            with pytest.raises(Forbidden):
                decide(state, action, sides)
        elif state not in rule.sources:
            with pytest.raises(Conflict) as exc:
                decide(state, action, sides)
            assert exc.value.code == ErrorCode.INVALID_TRANSITION
        else:
            step = decide(state, action, sides)
            assert step.to_state == (rule.target or state)


def test_finished_tasks_take_no_action() -> None:
    for state in (State.CLOSED, State.CANCELLED):
        for action in ACTIONS:
            with pytest.raises((Conflict, Forbidden)):
                decide(state, action, OWNER | CREATOR | SYSTEM)


def test_owner_cannot_verify_own_work_and_creator_cannot_accept() -> None:
    with pytest.raises(Forbidden):
        decide(State.RESOLVED, Action.VERIFY, OWNER)
    with pytest.raises(Forbidden):
        decide(State.CREATED, Action.ACCEPT, CREATOR)
    # holding both positions is allowed to do both
    assert decide(State.RESOLVED, Action.VERIFY, OWNER | CREATOR).to_state == State.VERIFIED
