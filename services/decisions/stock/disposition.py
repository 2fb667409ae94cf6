"""What happens to a returned item, from its inspection (pure).

| inspection                                          | disposition       |
|-----------------------------------------------------|-------------------|
| does not match the ordered item                     | QUARANTINE        |
| weight below half of the expected weight            | QUARANTINE        |
| grade A (as new)                                    | RESTOCK_SELLABLE  |
| grade B (opened)                                    | REFURBISH         |
| grade C (damaged)                                   | RETURN_TO_VENDOR  |
| grade D (unusable)                                  | DISPOSE           |
| grade unknown                                       | QUARANTINE        |

The identity rows come first, always; then the disposition rules as data
(disposition_rules.py, deploy/stock/dispositions.yaml: LIQUIDATE for low-value or aged
stock, a category's own path), then the grade. Without rules, the grade decides as above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.decisions.stock.disposition_rules import DEFAULT_RULES, DispositionRules, ItemFacts

MIN_WEIGHT_RATIO_NUM, MIN_WEIGHT_RATIO_DEN = 1, 2  # below 1/2 of expected is suspicious

BY_GRADE = dict(DEFAULT_RULES.by_grade)
NO_FACTS = ItemFacts()


@dataclass(frozen=True)
class Decision:
    disposition: str
    rule: str


def weight_far_below_expected(item: dict[str, Any]) -> bool:
    expected = item.get("expected_weight_grams")
    if not expected:
        return False
    return item["measured_weight_grams"] * MIN_WEIGHT_RATIO_DEN < expected * MIN_WEIGHT_RATIO_NUM


def decide(
    item: dict[str, Any], facts: ItemFacts = NO_FACTS, rules: DispositionRules = DEFAULT_RULES
) -> Decision:
    if not item["matches_order"]:
        return Decision("QUARANTINE", "item-does-not-match-order")
    if weight_far_below_expected(item):
        return Decision("QUARANTINE", "weight-far-below-expected")
    disposition, rule = rules.decide(item["grade"], facts)
    return Decision(disposition, rule)


def movements_for(
    return_id: str,
    warehouse_id: str,
    items: list[dict[str, Any]],
    facts: Mapping[str, ItemFacts] | None = None,
    rules: DispositionRules = DEFAULT_RULES,
) -> list[dict]:
    """One +1 movement per inspected item into the location of its disposition (`facts`:
    what the order says of each sku). movement_id names the cause (return, step, item) so
    replays can be recognised."""
    movements = []
    for index, item in enumerate(items, start=1):
        decision = decide(item, (facts or {}).get(item["sku"], NO_FACTS), rules)
        movements.append(
            {
                "movement_id": f"{return_id}-intake-{index}-{item['sku']}",
                "sku": item["sku"],
                "location": f"{warehouse_id}/{decision.disposition}",
                "disposition": decision.disposition,
                "quantity": 1,
            }
        )
    return movements


def reversal_movements(return_id: str, warehouse_id: str, movements: list[dict]) -> list[dict]:
    """Undo an intake (compensation): each unit leaves its location and goes to quarantine.
    Units already in quarantine stay. Ids name the cause, so a redelivery moves nothing."""
    reversal = []
    for index, original in enumerate(movements, start=1):
        if original["disposition"] == "QUARANTINE":
            continue
        base = f"{return_id}-reverse-{index}-{original['sku']}"
        reversal.append(
            {**original, "movement_id": f"{base}-out", "quantity": -original["quantity"]}
        )
        reversal.append(
            {
                "movement_id": f"{base}-in",
                "sku": original["sku"],
                "location": f"{warehouse_id}/QUARANTINE",
                "disposition": "QUARANTINE",
                "quantity": original["quantity"],
            }
        )
    return reversal
