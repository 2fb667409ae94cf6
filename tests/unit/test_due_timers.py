"""The coordinator's due-timer index fires what a scan of every saga would fire."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.engine.due_timers import SMALL_HEAP, DueTimers

REFIRE = 15


def scan_all(sagas: dict[str, int | None], fired: dict[str, int], now: int) -> list[str]:
    """The timer loop before the index: every saga looked at each time."""
    due = []
    for rid, due_at in sorted(sagas.items()):
        if due_at is None or due_at > now or now - fired.get(rid, -(10**9)) < REFIRE:
            continue
        fired[rid] = now
        due.append(rid)
    return due


def from_index(
    timers: DueTimers, sagas: dict[str, int | None], fired: dict[str, int], now: int
) -> list[str]:
    """The timer loop with the index (as coordinator/handlers.py due_timer_events)."""
    due = []
    for rid in timers.due(now, sagas.items(), len(sagas), lambda due_at: due_at):
        due_at = sagas.get(rid)
        if due_at is None or due_at > now:
            continue
        fired_at = fired.get(rid)
        if fired_at is not None and now - fired_at < REFIRE:
            timers.note(rid, fired_at + REFIRE)
            continue
        fired[rid] = now
        timers.note(rid, now + REFIRE)
        due.append(rid)
    return sorted(due)


operation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from("abcdef"), st.integers(-5, 40)),
    st.tuples(st.just("finish"), st.sampled_from("abcdef"), st.just(0)),
    st.tuples(st.just("tick"), st.just(""), st.integers(0, 30)),
    st.tuples(st.just("reload"), st.sampled_from("abcdef"), st.integers(-5, 40)),
)


@settings(max_examples=400)
@given(st.lists(operation, max_size=60))
def test_the_index_fires_what_a_full_scan_fires(operations: list[tuple[str, str, int]]) -> None:
    reloads = [0]
    timers = DueTimers(reloads=lambda: reloads[0])
    sagas: dict[str, int | None] = {}
    fired_scan: dict[str, int] = {}
    fired_index: dict[str, int] = {}
    now = 0
    for kind, rid, number in operations:
        if kind == "set":  # a step sets a new timer and notes it
            sagas[rid] = now + number
            fired_scan.pop(rid, None)  # a new timer id: never fired
            fired_index.pop(rid, None)
            timers.note(rid, now + number)
        elif kind == "finish":
            sagas[rid] = None
        elif kind == "reload":  # recovery loads a saga the steps never noted
            sagas[rid] = now + number
            fired_scan.pop(rid, None)
            fired_index.pop(rid, None)
            reloads[0] += 1
        else:
            now += number
            assert from_index(timers, sagas, fired_index, now) == scan_all(sagas, fired_scan, now)


def test_stale_entries_are_dropped_by_a_rebuild() -> None:
    timers = DueTimers()
    sagas = {"a": 10_000}
    for due_at in range(5 * SMALL_HEAP):  # the same saga's timer moved again and again
        timers.note("a", due_at + 10_000)
    assert timers.due(0, sagas.items(), len(sagas), lambda due_at: due_at) == []
    assert len(timers) == 1
