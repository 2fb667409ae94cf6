"""A back-test's replay (pure): the history's events in event-time order through the
features and a rule set, one decision per inspected return, as the risk step would have
made it before money moved; each judged against what the inspection confirmed.

Orders feed the windows and give the shipped serials; an accepted return counts when it
was accepted; at its inspection the return's features are read as of then, the rules
decide, and only then is the inspection counted. Events before `start_ms` feed the windows
but are not judged; events at or after `end_ms` are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.decisions.risk.backtest import Judged
from services.decisions.risk.return_features import (
    apply,
    counted_inspection,
    counted_order,
    counted_return,
    item_facts,
    return_features,
)
from services.decisions.risk.rolling_counts import RollingCounts
from services.decisions.risk.rule_sets import RuleSet

ORDER_CAP = 200_000  # shipped serials kept for the orders seen last (bounded)


@dataclass(frozen=True)
class HistoryEvent:
    name: str  # OrderPlaced, ReturnAccepted, InspectionRecorded (others are skipped)
    at_ms: int  # event time
    record: Mapping[str, Any]


def replay(
    events: Iterable[HistoryEvent],
    rules: RuleSet,
    start_ms: int,
    end_ms: int,
    verdicts: Mapping[str, bool] | None = None,
) -> list[Judged]:
    """`verdicts`: reviewers' verdicts by return id (True: abuse, denied); where one was
    given it is the truth, else what the inspection confirmed."""
    keys: dict[tuple[str, str], RollingCounts] = {}
    shipped: dict[str, list[str]] = {}
    requests: dict[str, Mapping[str, Any]] = {}
    judged: list[Judged] = []
    for event in sorted(events, key=lambda e: e.at_ms):
        if event.at_ms >= end_ms:
            break
        if event.name == "OrderPlaced":
            order = event.record["order"]
            shipped[order["order_ref"]] = [
                s for line in order["lines"] for s in line.get("serials", [])
            ]
            if len(shipped) > ORDER_CAP:
                shipped.pop(next(iter(shipped)))
            apply(keys, counted_order(order))
        elif event.name == "ReturnAccepted":
            request = event.record["requested"]
            requests[request["envelope"]["return_id"]] = request
            apply(keys, counted_return(request, event.at_ms))
        elif event.name == "InspectionRecorded":
            request = requests.pop(event.record["envelope"]["return_id"], None)
            if request is None:
                continue  # its return was accepted before the history starts
            facts = item_facts(
                request, event.record["items"], shipped.get(request["order_ref"]), event.at_ms
            )
            if event.at_ms >= start_ms:
                decision = rules.decide(return_features(request, facts, keys, event.at_ms))
                return_id = event.record["envelope"]["return_id"]
                confirmed = facts.fraud or facts.overturned or facts.worn
                confirmed = (verdicts or {}).get(return_id, confirmed)
                judged.append(Judged(decision, confirmed, return_id))
            apply(keys, counted_inspection(request, facts, event.at_ms))
    return judged
