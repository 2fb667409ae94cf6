"""The cases' terms as data (deploy/cases/terms.yaml, parsed here without I/O): a ticket
category → a case type; per type the SLA in hours (per market, with a default) and the
outcomes it closes with; how often an overdue case escalates, up to which level."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HOUR_MS = 3_600_000
ANY_CATEGORY = "*"


class CaseTermsError(ValueError):
    """The terms file is wrong; the message names every problem."""


@dataclass(frozen=True)
class CaseType:
    name: str
    categories: tuple[str, ...]
    sla_hours: Mapping[str, float]  # market (or "default") -> hours
    outcomes: tuple[str, ...]

    def sla_ms(self, market: str) -> int:
        return int(self.sla_hours.get(market, self.sla_hours["default"]) * HOUR_MS)


@dataclass(frozen=True)
class CaseTerms:
    types: Mapping[str, CaseType]
    escalate_every_ms: int
    max_level: int

    def type_of(self, category: str) -> CaseType:
        fallback = None
        for case_type in self.types.values():
            if category in case_type.categories:
                return case_type
            if ANY_CATEGORY in case_type.categories:
                fallback = case_type
        if fallback is None:
            raise KeyError(category)
        return fallback


def parse_case_terms(data: Any) -> CaseTerms:
    problems: list[str] = []
    if not isinstance(data, Mapping) or data.get("version") != 1:
        raise CaseTermsError("the terms need `version: 1` and `types`")
    types: dict[str, CaseType] = {}
    for name, spec in (data.get("types") or {}).items():
        if not isinstance(spec, Mapping):
            problems.append(f"types.{name}: not a mapping")
            continue
        categories = tuple(str(c) for c in spec.get("categories") or ())
        sla = spec.get("sla_hours") or {}
        outcomes = tuple(str(o) for o in spec.get("outcomes") or ())
        if not categories:
            problems.append(f"types.{name}.categories: none")
        if not isinstance(sla, Mapping) or "default" not in sla:
            problems.append(f"types.{name}.sla_hours: needs a default")
            sla = {"default": 24}
        bad = [m for m, h in sla.items() if not isinstance(h, int | float) or h <= 0]
        if bad:
            problems.append(f"types.{name}.sla_hours: not a positive number for {bad}")
        if not outcomes:
            problems.append(f"types.{name}.outcomes: none")
        types[str(name)] = CaseType(str(name), categories, dict(sla), outcomes)
    if not types:
        problems.append("types: none")
    seen: dict[str, str] = {}
    for case_type in types.values():
        for category in case_type.categories:
            if category in seen:
                problems.append(f"category {category} is in {seen[category]} and {case_type.name}")
            seen[category] = case_type.name
    if ANY_CATEGORY not in seen:
        problems.append('no type takes the other categories ("*")')
    every = data.get("escalate_every_hours")
    level = data.get("max_level")
    if not isinstance(every, int | float) or every <= 0:
        problems.append("escalate_every_hours: a positive number")
    if not isinstance(level, int) or isinstance(level, bool) or level < 1:
        problems.append("max_level: a whole number from 1")
    if problems:
        raise CaseTermsError("; ".join(problems))
    return CaseTerms(types, int(every * HOUR_MS), level)
