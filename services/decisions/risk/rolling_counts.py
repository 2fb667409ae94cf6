"""Counts over rolling event-time windows (pure), bounded per key.

One key's history (a buyer, a seller, a SKU, a pickup address) is kept as a bucket per day
of event time (days since 1970, UTC): counter name → total. Windows are sums over the days
`(as_of − window, as_of]`. Days older than the longest window (`horizon_days`) are dropped
whenever something is added or asked (`expire`), so a key never holds more than
`horizon_days` buckets, however long it lives, and a restart that rebuilds the buckets from
their stored form expires them the same way (nothing depends on timers being re-armed).

A distinct count (buyers behind one address) keeps up to `distinct_cap` members per day;
beyond it the day only counts (the figure is then a floor, flagged as saturated).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DAY_MS = 86_400_000
DISTINCT_CAP = 64


def day_of(at_ms: int) -> int:
    """The UTC day (since 1970) an event-time instant falls on."""
    return at_ms // DAY_MS


@dataclass
class DayBucket:
    counts: dict[str, int] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)  # distinct name → ids
    saturated: set[str] = field(default_factory=set)


@dataclass
class RollingCounts:
    """One key's days; `horizon_days`: the longest window any rule reads."""

    horizon_days: int
    days: dict[int, DayBucket] = field(default_factory=dict)
    newest_day: int | None = None

    def add(
        self,
        at_ms: int,
        counts: Mapping[str, int] | None = None,
        members: Mapping[str, str] | None = None,
    ) -> bool:
        """Count an event at its event time; False (and nothing counted) when it is older
        than the horizon behind the newest day seen (a late replay of ancient history)."""
        day = day_of(at_ms)
        newest = day if self.newest_day is None else max(self.newest_day, day)
        if day <= newest - self.horizon_days:
            return False
        self.newest_day = newest
        bucket = self.days.setdefault(day, DayBucket())
        for name, amount in (counts or {}).items():
            bucket.counts[name] = bucket.counts.get(name, 0) + amount
        for name, member in (members or {}).items():
            seen = bucket.members.setdefault(name, [])
            if member in seen:
                continue
            if len(seen) >= DISTINCT_CAP:
                bucket.saturated.add(name)
                continue
            seen.append(member)
        self.expire(newest)
        return True

    def expire(self, today: int) -> None:
        """Drop the days no window reaches any more."""
        oldest_kept = today - self.horizon_days + 1
        for day in [d for d in self.days if d < oldest_kept]:
            del self.days[day]

    def total(self, name: str, as_of_ms: int, window_days: int) -> int:
        """The counter's sum over the `window_days` days ending on `as_of_ms`'s day."""
        self._check(window_days)
        last = day_of(as_of_ms)
        return sum(
            bucket.counts.get(name, 0)
            for day, bucket in self.days.items()
            if last - window_days < day <= last
        )

    def distinct(self, name: str, as_of_ms: int, window_days: int) -> tuple[int, bool]:
        """How many distinct members over the window, and whether a day was saturated (the
        figure is then at least this)."""
        seen, saturated = self.members(name, as_of_ms, window_days)
        return len(seen), saturated

    def members(self, name: str, as_of_ms: int, window_days: int) -> tuple[set[str], bool]:
        """The distinct members over the window, and whether a day was saturated (some are
        then missing)."""
        self._check(window_days)
        last = day_of(as_of_ms)
        seen: set[str] = set()
        saturated = False
        for day, bucket in self.days.items():
            if last - window_days < day <= last:
                seen.update(bucket.members.get(name, ()))
                saturated = saturated or name in bucket.saturated
        return seen, saturated

    def _check(self, window_days: int) -> None:
        if not 0 < window_days <= self.horizon_days:
            raise ValueError(f"a {window_days}-day window is beyond the {self.horizon_days} kept")

    def to_json(self) -> dict[str, Any]:
        """The stored form (a state store's value): what `from_json` rebuilds."""
        return {
            "horizon_days": self.horizon_days,
            "newest_day": self.newest_day,
            "days": {
                str(day): {
                    "counts": bucket.counts,
                    "members": bucket.members,
                    "saturated": sorted(bucket.saturated),
                }
                for day, bucket in sorted(self.days.items())
            },
        }

    @classmethod
    def from_json(cls, stored: Mapping[str, Any], today_ms: int | None = None) -> RollingCounts:
        """Rebuilt from its stored form, and expired as of `today_ms` when given (after a
        restart the windows are as short as if it had run all along)."""
        rebuilt = cls(
            int(stored["horizon_days"]),
            {
                int(day): DayBucket(
                    dict(bucket["counts"]),
                    {name: list(ids) for name, ids in bucket["members"].items()},
                    set(bucket["saturated"]),
                )
                for day, bucket in stored["days"].items()
            },
            stored.get("newest_day"),
        )
        if today_ms is not None:
            rebuilt.expire(max(day_of(today_ms), rebuilt.newest_day or 0))
        return rebuilt
