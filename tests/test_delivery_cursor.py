"""The per-connection ordering state machine, without sockets (docs/style.md practice 2)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zzd.gateway.delivery import DeliveryCursor


def f(seq: int) -> str:
    return f"e{seq}"


def test_in_order_events_pass_straight_through_and_repeats_are_dropped() -> None:
    c = DeliveryCursor()
    assert c.start(10) is False
    assert c.offer(11, f(11)) == ["e11"]
    assert c.offer(11, f(11)) == []
    assert c.offer(9, f(9)) == []
    assert c.cursor == 11


def test_out_of_order_events_are_held_and_released_in_order_without_a_read() -> None:
    c = DeliveryCursor()
    c.start(0)
    assert c.offer(3, f(3)) == [] and c.has_gap
    assert c.offer(2, f(2)) == []
    assert c.offer(1, f(1)) == ["e1", "e2", "e3"]
    assert not c.has_gap and not c.catching_up and c.cursor == 3


def test_a_gap_that_stays_open_falls_back_to_the_database() -> None:
    c = DeliveryCursor()
    c.start(0)
    c.offer(2, f(2))
    assert c.gap_timeout() is True and c.catching_up
    assert c.offer(1, f(1)) == []  # the catch-up owns delivery now
    assert c.take_stored(1) and c.take_stored(2) and not c.take_stored(2)
    assert c.finish_page(page_full=False) is False and c.cursor == 2


def test_a_full_reorder_buffer_starts_a_catch_up() -> None:
    c = DeliveryCursor(max_held=2)
    c.start(0)
    c.offer(3, f(3))
    c.offer(4, f(4))
    assert not c.catching_up
    c.offer(5, f(5))
    assert c.catching_up


def test_events_seen_before_the_start_position_force_a_catch_up() -> None:
    c = DeliveryCursor()
    assert c.offer(5, f(5)) == []  # registered before the position was read
    assert c.start(3) is True and c.catching_up


def test_catch_up_keeps_reading_until_it_passed_everything_seen() -> None:
    c = DeliveryCursor()
    c.start(0)
    c.nudge(2)
    assert c.take_stored(1) and c.take_stored(2)
    c.offer(3, f(3))  # arrives while the catch-up is finishing its page
    assert c.finish_page(page_full=False) is True


# A pure state-machine check: on a starved CI core, generating its inputs (or one example)
# can take seconds, which says nothing about the cursor (failed once at load 10).
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.permutations(list(range(1, 30))), st.sets(st.integers(1, 29), max_size=5))
def test_any_arrival_order_with_losses_delivers_each_seq_once_in_order(order: list[int], lost: set[int]) -> None:
    """Live arrivals in any order, some lost; the database repairs the rest (a model of the connection)."""
    c = DeliveryCursor(max_held=8)
    c.start(0)
    sent: list[int] = []
    for seq in order:
        if seq not in lost:
            sent += [int(x[1:]) for x in c.offer(seq, f(seq))]
        if c.catching_up:
            # The catch-up reads everything committed so far (all 29 here).
            while True:
                sent += [s for s in range(c.cursor + 1, 30) if c.take_stored(s)]  # type: ignore[operator]
                if not c.finish_page(page_full=False):
                    break
    if c.has_gap and c.gap_timeout() or c.nudge(29):
        while True:
            sent += [s for s in range(c.cursor + 1, 30) if c.take_stored(s)]  # type: ignore[operator]
            if not c.finish_page(page_full=False):
                break
    assert sent == list(range(1, 30))
