"""How good a rule set is on history (pure): per rule, how often it fired, and where the
truth is known (inspection confirmed the abuse, a reviewer decided), its precision and
recall; per outcome, how many returns got it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from services.decisions.risk.rule_sets import Decision


@dataclass(frozen=True)
class Judged:
    decision: Decision
    abuse: bool | None  # confirmed (True), cleared (False), or nobody knows (None)
    return_id: str = ""


@dataclass(frozen=True)
class RuleQuality:
    rule_id: str
    hits: int  # returns it fired on
    known: int  # of those, returns whose truth is known
    true_positives: int
    recall_base: int  # confirmed abuse in the history, fired on or not

    @property
    def precision(self) -> float | None:
        return None if not self.known else self.true_positives / self.known

    @property
    def recall(self) -> float | None:
        return None if not self.recall_base else self.true_positives / self.recall_base


@dataclass(frozen=True)
class Backtest:
    returns: int
    outcomes: dict[str, int]
    rules: tuple[RuleQuality, ...]


def backtest(judged: Iterable[Judged], rule_ids: Iterable[str]) -> Backtest:
    """Every rule of the set (also those that never fired), in the set's order."""
    items = list(judged)
    confirmed = sum(1 for item in items if item.abuse is True)
    qualities = []
    for rule_id in rule_ids:
        fired = [i for i in items if any(f.rule_id == rule_id for f in i.decision.fired)]
        known = [i for i in fired if i.abuse is not None]
        qualities.append(
            RuleQuality(
                rule_id,
                len(fired),
                len(known),
                sum(1 for i in known if i.abuse),
                confirmed,
            )
        )
    outcomes = Counter(item.decision.outcome.value for item in items)
    return Backtest(len(items), dict(sorted(outcomes.items())), tuple(qualities))
