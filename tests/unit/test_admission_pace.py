"""The pace of admission (services/decisions/admission_pace.py): open until the pipeline's
wait passes its mark, then cut and grown from it, spent as a token bucket."""

from __future__ import annotations

import itertools
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.admission_pace import AdmissionPace, PaceSettings

PACE = PaceSettings()


def offer(pace: AdmissionPace, per_s: float, from_ms: int, to_ms: int) -> int:
    """Offer `per_s` new returns per second, evenly, over [from_ms, to_ms); how many were taken."""
    taken = 0
    count = int(per_s * (to_ms - from_ms) / 1000)
    for n in range(count):
        taken += pace.take(from_ms + n * (to_ms - from_ms) // count)
    return taken


def test_the_door_is_open_until_the_wait_first_reaches_the_mark() -> None:
    pace = AdmissionPace(PACE, 0)
    for second in range(30):
        pace.adjust(second * 1000, PACE.slow_from_s * 0.9)
        assert offer(pace, 1000, second * 1000, second * 1000 + 1000) == 1000
    assert pace.rate is None


def test_a_wait_past_the_mark_cuts_to_a_share_of_what_was_taken() -> None:
    pace = AdmissionPace(PACE, 0)
    offer(pace, 100, 0, 5000)
    pace.adjust(5000, PACE.slow_from_s)  # at the mark: the cut factor
    assert pace.rate == pytest.approx(PACE.cut * 100, rel=0.01)
    offer(pace, 100, 5000, 10_000)  # the pace, 70/s, was taken
    pace.adjust(10_000, PACE.slow_from_s * 1.6)  # 1.6× the mark: ÷ 1.6
    assert pace.rate == pytest.approx(PACE.cut * 100 / 1.6, rel=0.02)
    offer(pace, 100, 10_000, 15_000)
    pace.adjust(15_000, PACE.slow_from_s * 10)  # never below the deepest cut
    assert pace.rate == pytest.approx(PACE.deepest_cut * PACE.cut * 100 / 1.6, rel=0.02)


def test_a_late_reading_does_not_cut_twice_for_the_same_queue() -> None:
    pace = AdmissionPace(PACE, 0)
    offer(pace, 100, 0, 5000)
    pace.adjust(5000, 3.0)
    cut = pace.rate
    for at_ms in range(6000, 10_000, 1000):
        pace.adjust(at_ms, 9.0)
        assert pace.rate is not None and pace.rate >= cut  # grown or kept, never cut again
    pace.adjust(10_000, 9.0)
    assert pace.rate is not None and pace.rate < cut


def test_over_the_pace_the_door_takes_the_pace_and_no_burst_beyond_one_second() -> None:
    pace = AdmissionPace(PACE, 0)
    offer(pace, 200, 0, 5000)
    pace.adjust(5000, PACE.slow_from_s)
    rate = pace.rate
    assert rate is not None
    taken = offer(pace, 400, 5000, 6000)  # the bucket was emptied to one second's worth
    assert taken <= rate + 1
    pace.adjust(6000, PACE.slow_from_s)  # no cut within cut_every_s
    taken = offer(pace, 400, 6000, 16_000)
    assert abs(taken - rate * 10) <= rate + 1


def test_below_the_mark_the_pace_grows_and_opens_once_the_offer_is_below_it() -> None:
    pace = AdmissionPace(PACE, 0)
    offer(pace, 100, 0, 5000)
    pace.adjust(5000, 3.0)
    first = pace.rate
    second = 5
    while pace.rate is not None and second < 600:
        offer(pace, 20, second * 1000, (second + 1) * 1000)  # the offer fell to 20/s
        second += 1
        pace.adjust(second * 1000, 0.0)
        if pace.rate is not None:
            assert pace.rate > first
    assert pace.rate is None and second < 60  # ≥ 2× the 20/s taken: open again


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 40, allow_nan=False) | st.none(),  # the wait read this second
            st.integers(0, 600),  # returns offered this second
        ),
        min_size=1,
        max_size=60,
    )
)
def test_the_pace_stays_above_its_floor_and_the_bucket_within_one_second(
    seconds: list[tuple[float | None, int]],
) -> None:
    pace = AdmissionPace(PACE, 0)
    cuts: list[int] = []
    for second, (wait, offered) in enumerate(seconds):
        at_ms = second * 1000
        before = pace.rate
        pace.adjust(at_ms, wait)
        if pace.rate is not None and (before is None or pace.rate < before):
            cuts.append(at_ms)
        if pace.rate is not None:
            assert pace.rate >= PACE.min_rate
            assert pace.tokens <= pace.rate * PACE.burst_s + 1e-9
        if offered:
            offer(pace, offered, at_ms, at_ms + 1000)
    assert all(b - a >= PACE.cut_every_s * 1000 for a, b in itertools.pairwise(cuts))


def test_switched_off_the_door_is_never_paced() -> None:
    pace = AdmissionPace(PaceSettings(enabled=False), 0)
    offer(pace, 100, 0, 5000)
    pace.adjust(5000, 30.0)
    assert pace.rate is None and offer(pace, 1000, 5000, 6000) == 1000


def simulate(capacity: float, offered: float, delay_s: float, seconds: int) -> list[float]:
    """A pipeline finishing `capacity` returns/s behind a door offered `offered`/s; the door
    reads the queue's wait as the mean of 5 s, `delay_s` late (the signalled positions).
    The wait a return taken at each 10 ms step sees, seconds."""
    pace = AdmissionPace(PACE, 0)
    queued, credit = 0.0, 0.0
    history: deque[tuple[int, float]] = deque()
    waits = []
    for at_ms in range(0, seconds * 1000, 10):
        credit += offered / 100
        while credit >= 1:
            credit -= 1
            queued += pace.take(at_ms)
        queued = max(0.0, queued - capacity / 100)
        waits.append(queued / capacity)
        history.append((at_ms, queued / capacity))
        if at_ms % 1000 == 0:
            seen_to = at_ms - delay_s * 1000
            while history and history[0][0] <= seen_to - 5000:
                history.popleft()
            seen = [wait for t, wait in history if t <= seen_to]
            pace.adjust(at_ms, sum(seen) / len(seen) if seen else 0.0)
    return waits


def test_at_four_times_the_capacity_a_late_reading_keeps_the_wait_bounded() -> None:
    """Past the onset (the door open until it first sees the queue), a 4× offer read 7 s
    late keeps the queue under 15 s and the pipeline busy (no pace starving it)."""
    waits = simulate(capacity=50, offered=200, delay_s=7, seconds=600)
    settled = waits[len(waits) // 6 :]
    assert max(settled) < 15
    assert sum(w > 0 for w in settled) / len(settled) > 0.5


def test_while_the_wait_falls_past_the_mark_the_pace_is_held() -> None:
    pace = AdmissionPace(PACE, 0)
    offer(pace, 100, 0, 5000)
    pace.adjust(5000, 10.0)
    held = pace.rate
    for at_ms, wait in ((10_000, 7.0), (15_000, 5.0), (20_000, 3.5)):  # each ≥ 20 % lower
        pace.adjust(at_ms, wait)
        assert pace.rate == held
    pace.adjust(25_000, 3.4)  # no longer falling: cut again
    assert held is not None and pace.rate is not None and pace.rate < held


def test_once_paced_a_cut_starts_from_the_pace_not_from_what_the_early_refusals_left() -> None:
    pace = AdmissionPace(PACE, 0)
    offer(pace, 100, 0, 5000)
    pace.adjust(5000, PACE.slow_from_s)
    paced = pace.rate
    offer(pace, 3, 5000, 10_000)  # the early refusals let through 3/s
    pace.adjust(10_000, PACE.slow_from_s)
    assert paced is not None and pace.rate == pytest.approx(PACE.cut * paced)
