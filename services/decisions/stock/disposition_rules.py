"""Disposition rules as data (deploy/stock/dispositions.yaml, parsed here without I/O): after
the identity checks (disposition.py), the first rule whose conditions all hold decides; an
item no rule takes goes by its grade. A rule may read the item's grade, and its facts from
the order (category, unit value, currency, market, days since delivery): LIQUIDATE for
low-value or aged stock, a category's own path, and so on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DISPOSITIONS = frozenset(
    {"RESTOCK_SELLABLE", "REFURBISH", "RETURN_TO_VENDOR", "DISPOSE", "QUARANTINE", "LIQUIDATE"}
)
GRADES = ("A", "B", "C", "D")
DAY_MS = 86_400_000


class DispositionRulesError(ValueError):
    """The rules file is wrong; the message names every problem."""


@dataclass(frozen=True)
class ItemFacts:
    """What the order says of a returned item (absent: only the grade decides)."""

    category: str = ""
    unit_value_minor: int | None = None
    currency: str = ""
    market: str = ""
    days_since_delivery: int | None = None


@dataclass(frozen=True)
class DispositionRule:
    rule_id: str
    disposition: str
    grades: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    markets: frozenset[str] = frozenset()
    unit_value_below: Mapping[str, int] = field(default_factory=dict)
    days_since_delivery_over: int | None = None

    def holds(self, grade: str, facts: ItemFacts) -> bool:
        if self.grades and grade not in self.grades:
            return False
        if self.categories and facts.category not in self.categories:
            return False
        if self.markets and facts.market not in self.markets:
            return False
        if self.unit_value_below:
            limit = self.unit_value_below.get(facts.currency)
            if limit is None or facts.unit_value_minor is None or facts.unit_value_minor >= limit:
                return False
        if self.days_since_delivery_over is not None:
            days = facts.days_since_delivery
            if days is None or days <= self.days_since_delivery_over:
                return False
        return True


@dataclass(frozen=True)
class DispositionRules:
    rules: tuple[DispositionRule, ...]
    by_grade: Mapping[str, str]

    def decide(self, grade: str, facts: ItemFacts) -> tuple[str, str]:
        """(disposition, rule id) for an item that passed the identity checks."""
        for rule in self.rules:
            if rule.holds(grade, facts):
                return rule.disposition, rule.rule_id
        if grade in self.by_grade:
            return self.by_grade[grade], f"grade-{grade}"
        return "QUARANTINE", "grade-unknown"


DEFAULT_RULES = DispositionRules(
    (), {"A": "RESTOCK_SELLABLE", "B": "REFURBISH", "C": "RETURN_TO_VENDOR", "D": "DISPOSE"}
)


def _names(value: Any, where: str, problems: list[str]) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{where}: a list of names")
        return frozenset()
    return frozenset(value)


def parse_disposition_rules(data: Any) -> DispositionRules:
    problems: list[str] = []
    if not isinstance(data, Mapping) or data.get("version") != 1:
        raise DispositionRulesError("the rules need `version: 1`, `rules` and `by_grade`")
    rules: list[DispositionRule] = []
    seen: set[str] = set()
    for index, spec in enumerate(data.get("rules") or []):
        where = f"rules[{index}]"
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: not a mapping")
            continue
        rule_id = spec.get("id")
        if not isinstance(rule_id, str) or not rule_id or rule_id in seen:
            problems.append(f"{where}.id: a name of its own")
        seen.add(str(rule_id))
        disposition = spec.get("disposition")
        if disposition not in DISPOSITIONS:
            problems.append(f"{where}.disposition: one of {sorted(DISPOSITIONS)}")
        grades = _names(spec.get("grades"), f"{where}.grades", problems)
        if not grades <= set(GRADES):
            problems.append(f"{where}.grades: of {list(GRADES)}")
        limits = spec.get("unit_value_below") or {}
        if not isinstance(limits, Mapping) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in limits.values()
        ):
            problems.append(f"{where}.unit_value_below: currency → positive minor units")
            limits = {}
        days = spec.get("days_since_delivery_over")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 0):
            problems.append(f"{where}.days_since_delivery_over: a whole number of days")
            days = None
        unknown = set(spec) - {
            "id",
            "disposition",
            "grades",
            "categories",
            "markets",
            "unit_value_below",
            "days_since_delivery_over",
        }
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        rules.append(
            DispositionRule(
                str(rule_id),
                str(disposition),
                grades,
                _names(spec.get("categories"), f"{where}.categories", problems),
                _names(spec.get("markets"), f"{where}.markets", problems),
                dict(limits),
                days,
            )
        )
    by_grade = data.get("by_grade")
    if (
        not isinstance(by_grade, Mapping)
        or set(by_grade) != set(GRADES)
        or not all(d in DISPOSITIONS for d in by_grade.values())
    ):
        problems.append(f"by_grade: every grade of {list(GRADES)} → a disposition")
        by_grade = {}
    if problems:
        raise DispositionRulesError("; ".join(problems))
    return DispositionRules(tuple(rules), dict(by_grade))


def item_facts_of(command: Mapping[str, Any]) -> dict[str, ItemFacts]:
    """Each sku's facts from an IntakeRequested (`item_facts`, `market`, `delivered_at`);
    the age is counted to the command's time, so a replay decides the same."""
    at = int(command["envelope"]["occurred_at"])
    delivered = command.get("delivered_at")
    days = None if delivered is None else max(0, (at - int(delivered)) // DAY_MS)
    return {
        entry["sku"]: ItemFacts(
            str(entry.get("category") or ""),
            entry.get("unit_price_minor"),
            str(entry.get("currency") or ""),
            str(command.get("market") or ""),
            days,
        )
        for entry in command.get("item_facts") or ()
    }
