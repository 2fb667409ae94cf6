"""Which settlement cycle rule each market follows (policy data): weekly from Monday 00:00
in the market's time zone unless BOOMERANG_SETTLEMENT_CYCLES (JSON: market →
{"timezone", "length_days", "cutoff_hour"}) says otherwise; a market not listed settles
weekly in UTC. The time zones are read here, the decisions get a tzinfo
(services/decisions/settlement/cycles.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.decisions.settlement.cycles import CycleError, CycleRule

MARKET_ZONES = {
    "DE": "Europe/Berlin",
    "FR": "Europe/Paris",
    "NL": "Europe/Amsterdam",
    "ES": "Europe/Madrid",
    "IT": "Europe/Rome",
    "GB": "Europe/London",
    "US": "America/New_York",
    "JP": "Asia/Tokyo",
    "SG": "Asia/Singapore",
    "ID": "Asia/Jakarta",
    "KW": "Asia/Kuwait",
    "AU": "Australia/Sydney",
}


class CycleCalendar:
    def __init__(self, rules: Mapping[str, CycleRule]) -> None:
        self.rules = dict(rules)
        self._zones: dict[str, tzinfo] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CycleCalendar:
        env = os.environ if env is None else env
        rules = {market: CycleRule(market, zone) for market, zone in MARKET_ZONES.items()}
        try:
            overrides = json.loads(env.get("BOOMERANG_SETTLEMENT_CYCLES") or "{}")
            for market, rule in overrides.items():
                rules[market] = CycleRule(
                    market,
                    rule.get("timezone", MARKET_ZONES.get(market, "UTC")),
                    int(rule.get("length_days", 7)),
                    int(rule.get("cutoff_hour", 0)),
                )
        except (ValueError, TypeError, AttributeError, CycleError) as exc:
            raise ValueError(f"BOOMERANG_SETTLEMENT_CYCLES is not valid: {exc}") from exc
        calendar = cls(rules)
        for market in rules:
            calendar.rule_and_zone(market)  # an unknown zone fails at start, not at booking
        return calendar

    def rule_and_zone(self, market: str) -> tuple[CycleRule, tzinfo]:
        rule = self.rules.get(market) or CycleRule(market or "XX", "UTC")
        zone = self._zones.get(rule.timezone)
        if zone is None:
            try:
                zone = self._zones[rule.timezone] = ZoneInfo(rule.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"{market}: unknown time zone {rule.timezone!r}") from exc
        return rule, zone
