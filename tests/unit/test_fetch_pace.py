"""The fetch pace's terms (pure), and what it sets on a fetcher between polls."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from services.engine.fetch_pace import BUSY_MIN_BYTES, IDLE, FetchPace, terms_after_poll


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 5_000))
def test_the_fetcher_holds_the_terms_of_the_last_poll(polls, busy_wait_ms) -> None:
    fetcher = SimpleNamespace(_fetch_min_bytes=BUSY_MIN_BYTES, _fetch_max_wait_ms=busy_wait_ms)
    pace = FetchPace(SimpleNamespace(_fetcher=fetcher), busy_wait_ms)
    for brought in polls:
        terms = pace.after_poll(brought)
        assert terms == terms_after_poll(brought, busy_wait_ms)
        assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (
            terms.min_bytes,
            terms.max_wait_ms,
        )


def test_an_idle_fetch_returns_on_one_byte_and_a_busy_one_waits_for_64_kb() -> None:
    assert (IDLE.min_bytes, terms_after_poll(True, 100).min_bytes) == (1, 64 * 1024)
    assert terms_after_poll(False, 100) == IDLE


def test_a_fetcher_without_the_settings_is_left_alone() -> None:
    consumer = SimpleNamespace(_fetcher=SimpleNamespace())
    pace = FetchPace(consumer, 100)
    assert pace.after_poll(False).max_wait_ms == 100  # the consumer's own, unchanged
    assert vars(consumer._fetcher) == {}
