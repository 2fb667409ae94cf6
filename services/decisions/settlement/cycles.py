"""Settlement cycles (pure): a market pays its sellers per cycle — weekly by default, or
every N days — cut off at a local hour in the market's time zone. Cycle n of a market
starts at `anchor + n × length_days` (local date) at the cut-off hour; an entry belongs to
the cycle its booking time falls in, or, when that cycle is closed already, to the first
open one after it (a closed cycle never changes: a late entry lands in the next).

The time zone is the caller's (a `tzinfo`, e.g. zoneinfo.ZoneInfo("Europe/Berlin")):
reading the zone database is the adapter's business.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

ANCHOR = date(2024, 1, 1)  # a Monday: weekly cycles start on Mondays unless anchored elsewhere


class CycleError(ValueError):
    """A cycle rule that cannot be (length, hour out of range)."""


@dataclass(frozen=True)
class CycleRule:
    market: str
    timezone: str  # IANA name, e.g. Europe/Berlin (the adapter turns it into a tzinfo)
    length_days: int = 7
    cutoff_hour: int = 0
    anchor: date = ANCHOR

    def __post_init__(self) -> None:
        if not 1 <= self.length_days <= 31:
            raise CycleError(f"{self.market}: a cycle of {self.length_days} days")
        if not 0 <= self.cutoff_hour <= 23:
            raise CycleError(f"{self.market}: cut-off hour {self.cutoff_hour}")


@dataclass(frozen=True)
class Cycle:
    market: str
    number: int  # cycles since the anchor
    start_ms: int
    end_ms: int  # exclusive

    @property
    def cycle_id(self) -> str:
        return f"{self.market}-{self.number:05d}"


def _start_ms(rule: CycleRule, zone: tzinfo, number: int) -> int:
    day = rule.anchor + timedelta(days=number * rule.length_days)
    local = datetime.combine(day, time(rule.cutoff_hour), tzinfo=zone)
    return int(local.timestamp() * 1000)


def cycle_number(rule: CycleRule, zone: tzinfo, at_ms: int) -> int:
    """The cycle an instant falls in (before the cut-off hour: the day belongs to the cycle
    before it)."""
    local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(zone)
    shifted = local - timedelta(hours=rule.cutoff_hour)
    number = (shifted.date() - rule.anchor).days // rule.length_days
    # a DST change can move the cut-off across the boundary by an hour: settle it exactly
    while at_ms < _start_ms(rule, zone, number):
        number -= 1
    while at_ms >= _start_ms(rule, zone, number + 1):
        number += 1
    return number


def cycle(rule: CycleRule, zone: tzinfo, number: int) -> Cycle:
    start, end = _start_ms(rule, zone, number), _start_ms(rule, zone, number + 1)
    return Cycle(rule.market, number, start, end)


def cycle_for_entry(
    rule: CycleRule, zone: tzinfo, booked_at_ms: int, closed: Collection[int]
) -> Cycle:
    """The cycle an entry booked at `booked_at_ms` goes into: its own, or the first open
    one after it when that is closed."""
    number = cycle_number(rule, zone, booked_at_ms)
    while number in closed:
        number += 1
    return cycle(rule, zone, number)
