"""Settlement cycles and statements (services/decisions/settlement/cycles.py,
statements.py): every instant falls in exactly one cycle, cycles tile time across DST
changes, a late entry goes to the first open cycle, statements chain their balances and
no minor unit is lost across cycles."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.settlement.cycles import (
    CycleRule,
    cycle,
    cycle_for_entry,
    cycle_number,
)
from services.decisions.settlement.statements import StatementLine, statement

ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "UTC")
instants = st.integers(
    int(datetime(2024, 1, 2, tzinfo=UTC).timestamp() * 1000),
    int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000),
)
rules = st.builds(
    CycleRule,
    market=st.just("DE"),
    timezone=st.sampled_from(ZONES),
    length_days=st.sampled_from([7, 14, 1, 30]),
    cutoff_hour=st.integers(0, 23),
)


@settings(max_examples=400, deadline=None)
@given(rules, instants)
def test_every_instant_falls_in_one_cycle_and_cycles_tile(rule: CycleRule, at_ms: int) -> None:
    zone = ZoneInfo(rule.timezone)
    number = cycle_number(rule, zone, at_ms)
    own = cycle(rule, zone, number)
    assert own.start_ms <= at_ms < own.end_ms
    assert cycle(rule, zone, number + 1).start_ms == own.end_ms
    assert own.end_ms - own.start_ms >= (rule.length_days * 24 - 1) * 3_600_000  # DST: ±1 h


def test_a_weekly_cycle_cuts_off_at_the_local_hour() -> None:
    rule = CycleRule("DE", "Europe/Berlin", cutoff_hour=6)
    zone = ZoneInfo(rule.timezone)
    monday_0559 = int(datetime(2026, 12, 7, 5, 59, tzinfo=zone).timestamp() * 1000)
    monday_0600 = int(datetime(2026, 12, 7, 6, 0, tzinfo=zone).timestamp() * 1000)
    assert cycle_number(rule, zone, monday_0600) == cycle_number(rule, zone, monday_0559) + 1
    assert cycle(rule, zone, cycle_number(rule, zone, monday_0600)).start_ms == monday_0600


@given(rules, instants, st.sets(st.integers(-3, 3), max_size=5))
def test_a_late_entry_goes_to_the_first_open_cycle(
    rule: CycleRule, at_ms: int, closed_offsets: set[int]
) -> None:
    zone = ZoneInfo(rule.timezone)
    own = cycle_number(rule, zone, at_ms)
    closed = {own + offset for offset in closed_offsets}
    chosen = cycle_for_entry(rule, zone, at_ms, closed)
    assert chosen.number >= own and chosen.number not in closed
    assert all(n in closed for n in range(own, chosen.number))


def line(amount: int, n: int) -> StatementLine:
    return StatementLine(f"e{n}", f"RMA-{n}", "O-1", "SKU-1", "ItemPrice", "", amount, n)


@given(st.lists(st.lists(st.integers(-(10**6), 10**6), max_size=6), min_size=1, max_size=8))
def test_statements_chain_and_lose_no_unit_across_cycles(cycles: list[list[int]]) -> None:
    previous, paid = None, 0
    for number, amounts in enumerate(cycles):
        lines = [line(amount, i) for i, amount in enumerate(amounts)]
        current = statement("S-1", "EUR", f"DE-{number:05d}", previous, lines)
        assert current.opening_minor == (previous.carried_forward_minor if previous else 0)
        assert current.closing_minor == current.opening_minor + sum(amounts)
        assert current.payout_minor >= 0 and current.carried_forward_minor <= 0
        assert current.payout_minor + current.carried_forward_minor == current.closing_minor
        assert sum(current.totals.values()) == sum(amounts)
        paid += current.payout_minor
        previous = current
    assert paid + previous.carried_forward_minor == sum(sum(c) for c in cycles)
