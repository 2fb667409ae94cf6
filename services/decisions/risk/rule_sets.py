"""Risk rules as versioned data (pure): a rule set names its version, the score at which
each outcome starts, and its rules; a rule has an id, a condition over features and a
score. A return's decision is the sum of the scores of the rules that fired, mapped to
`approve` / `review` / `hold` / `decline`, and says which rules fired with the feature
values they read.

A condition is a comparison `{"feature": name, "<op>": value}` (op one of `>=`, `>`,
`<=`, `<`, `==`, `!=`, `in`) or a combination `{"all": [...]}`, `{"any": [...]}`,
`{"not": {...}}`. A feature the return does not have makes its comparison unknown, and an
unknown is never a match (`not` over it stays unknown): a rule never fires on a missing
input (the decision lists what was missing).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

FeatureValue = int | float | bool | str
Features = Mapping[str, FeatureValue]


class Outcome(StrEnum):
    APPROVE = "approve"  # money moves, nothing else
    REVIEW = "review"  # money moves, a case is queued
    HOLD = "hold"  # no money until a person decides
    DECLINE = "decline"  # the return is rejected with a reason the buyer reads


SEVERITY = (Outcome.APPROVE, Outcome.REVIEW, Outcome.HOLD, Outcome.DECLINE)
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda value, allowed: value in allowed,
}


class RuleSetError(ValueError):
    """A rule set document that cannot be used; the message names where."""


@dataclass(frozen=True)
class Condition:
    kind: str  # "compare", "all", "any", "not"
    feature: str = ""
    op: str = ""
    value: Any = None
    parts: tuple[Condition, ...] = ()

    def features(self) -> set[str]:
        if self.kind == "compare":
            return {self.feature}
        return set().union(*(part.features() for part in self.parts))

    def holds(self, features: Features) -> bool:
        """True only when the features show it (an unknown is not a match)."""
        return self.evaluate(features) is True

    def evaluate(self, features: Features) -> bool | None:
        """Three-valued: None when a feature it needs is missing and the rest cannot settle
        it (so `not` over a missing input stays unknown, never true)."""
        if self.kind == "compare":
            if self.feature not in features:
                return None
            try:
                return bool(OPERATORS[self.op](features[self.feature], self.value))
            except TypeError:  # a text compared with a number: not a match
                return False
        if self.kind == "not":
            inner = self.parts[0].evaluate(features)
            return None if inner is None else not inner
        values = [part.evaluate(features) for part in self.parts]
        if self.kind == "all":
            if False in values:
                return False
            return None if None in values else True
        if True in values:
            return True
        return None if None in values else False


@dataclass(frozen=True)
class Rule:
    rule_id: str
    score: int
    condition: Condition
    description: str = ""
    reason: str = ""  # what a buyer reads when this rule declines the return


@dataclass(frozen=True)
class FiredRule:
    rule_id: str
    score: int
    inputs: dict[str, FeatureValue]


@dataclass(frozen=True)
class Decision:
    rule_set: str
    version: int
    outcome: Outcome
    score: int
    fired: tuple[FiredRule, ...]
    missing: tuple[str, ...] = ()  # features a rule reads that the return did not have
    reason: str = ""  # for a decline: the buyer-facing reason of its highest-scoring rule

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_set": self.rule_set,
            "version": self.version,
            "outcome": self.outcome.value,
            "score": self.score,
            "fired": [
                {"rule_id": f.rule_id, "score": f.score, "inputs": f.inputs} for f in self.fired
            ],
            "missing": list(self.missing),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RuleSet:
    name: str
    version: int
    thresholds: dict[Outcome, int]  # the lowest score of each outcome but approve
    rules: tuple[Rule, ...] = field(default=())

    def decide(self, features: Features) -> Decision:
        """The decision over a return's features (the same features, the same decision)."""
        fired, missing = [], set()
        for rule in self.rules:
            read = rule.condition.features()
            missing |= read - set(features)
            if rule.condition.holds(features):
                inputs = {name: features[name] for name in sorted(read) if name in features}
                fired.append(FiredRule(rule.rule_id, rule.score, inputs))
        score = sum(f.score for f in fired)
        outcome = Outcome.APPROVE
        for candidate in SEVERITY[1:]:
            if score >= self.thresholds[candidate]:
                outcome = candidate
        reason = ""
        if outcome is Outcome.DECLINE:
            by_id = {rule.rule_id: rule for rule in self.rules}
            top = max(fired, key=lambda f: (f.score, f.rule_id))
            reason = by_id[top.rule_id].reason or "the return cannot be accepted"
        return Decision(
            self.name, self.version, outcome, score, tuple(fired), tuple(sorted(missing)), reason
        )


def parse_rule_set(document: Mapping[str, Any], where: str = "rule set") -> RuleSet:
    """A rule set from its document (YAML or JSON, already loaded); RuleSetError names the
    place that is wrong."""
    if not isinstance(document, Mapping):
        raise RuleSetError(f"{where}: must be a mapping")
    name = document.get("rule_set")
    version = document.get("version")
    if not isinstance(name, str) or not name:
        raise RuleSetError(f"{where}: rule_set must name the set")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RuleSetError(f"{where}: version must be a whole number from 1")
    thresholds = document.get("outcomes")
    if not isinstance(thresholds, Mapping) or set(thresholds) != {"review", "hold", "decline"}:
        raise RuleSetError(f"{where}: outcomes must give the score of review, hold and decline")
    scores = [thresholds[o.value] for o in SEVERITY[1:]]
    if not all(isinstance(s, int) and s > 0 for s in scores) or scores != sorted(set(scores)):
        raise RuleSetError(f"{where}: outcome scores must be whole, positive and increasing")
    rules_doc = document.get("rules")
    if not isinstance(rules_doc, list) or not rules_doc:
        raise RuleSetError(f"{where}: rules must be a non-empty list")
    rules = tuple(_rule(rule, f"{where}: rules[{n}]") for n, rule in enumerate(rules_doc))
    ids = [rule.rule_id for rule in rules]
    if len(ids) != len(set(ids)):
        raise RuleSetError(f"{where}: rule ids must be unique")
    return RuleSet(name, version, {o: thresholds[o.value] for o in SEVERITY[1:]}, rules)


def _rule(document: Any, where: str) -> Rule:
    if not isinstance(document, Mapping):
        raise RuleSetError(f"{where}: must be a mapping")
    rule_id, score = document.get("id"), document.get("score")
    if not isinstance(rule_id, str) or not rule_id:
        raise RuleSetError(f"{where}: id must be a name")
    if not isinstance(score, int) or isinstance(score, bool) or score < 0:
        raise RuleSetError(f"{where} ({rule_id}): score must be a whole number from 0")
    return Rule(
        rule_id,
        score,
        _condition(document.get("when"), f"{where} ({rule_id}).when"),
        str(document.get("description", "")),
        str(document.get("reason", "")),
    )


def _condition(document: Any, where: str) -> Condition:
    if not isinstance(document, Mapping) or not document:
        raise RuleSetError(f"{where}: must be a condition")
    for combine in ("all", "any"):
        if combine in document:
            parts = document[combine]
            if len(document) != 1 or not isinstance(parts, list) or not parts:
                raise RuleSetError(f"{where}: `{combine}` takes a non-empty list, alone")
            return Condition(
                combine,
                parts=tuple(_condition(p, f"{where}.{combine}[{n}]") for n, p in enumerate(parts)),
            )
    if "not" in document:
        if len(document) != 1:
            raise RuleSetError(f"{where}: `not` stands alone")
        return Condition("not", parts=(_condition(document["not"], f"{where}.not"),))
    feature = document.get("feature")
    ops = [key for key in document if key != "feature"]
    if not isinstance(feature, str) or not feature or len(ops) != 1 or ops[0] not in OPERATORS:
        raise RuleSetError(
            f"{where}: a comparison is {{feature: name, <op>: value}}, op one of {list(OPERATORS)}"
        )
    value = document[ops[0]]
    if ops[0] == "in" and not isinstance(value, list):
        raise RuleSetError(f"{where}: `in` takes a list")
    if ops[0] != "in" and not isinstance(value, int | float | bool | str):
        raise RuleSetError(f"{where}: compare with a number, true/false or a text")
    return Condition("compare", feature, ops[0], tuple(value) if ops[0] == "in" else value)


@dataclass(frozen=True)
class ShadowComparison:
    """A shadow rule set's decision beside the live one's (recorded, never acted on)."""

    live: Outcome
    shadow: Outcome
    only_live: tuple[str, ...]  # rules that fired in the live set only
    only_shadow: tuple[str, ...]

    @property
    def agrees(self) -> bool:
        return self.live is self.shadow


def compare_shadow(live: Decision, shadow: Decision) -> ShadowComparison:
    live_ids = {f.rule_id for f in live.fired}
    shadow_ids = {f.rule_id for f in shadow.fired}
    return ShadowComparison(
        live.outcome,
        shadow.outcome,
        tuple(sorted(live_ids - shadow_ids)),
        tuple(sorted(shadow_ids - live_ids)),
    )
