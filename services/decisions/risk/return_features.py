"""What the risk rules read (pure): what each order, return and inspection adds to the
rolling counts of its buyer, seller, SKU and pickup address, what an inspection says about
the item at hand, and the features of a return as the rules name them
(`<subject>.<figure>_<window>d`, `item.<fact>`).

The orders are the denominator of every rate and the truth for shipped serials; a return's
features are read as of its own event time, from counts that hold only earlier events and
its own request (its inspection is counted after the decision).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.decisions.risk.rolling_counts import DAY_MS, RollingCounts
from services.decisions.risk.rule_sets import FeatureValue

SUBJECTS = ("buyer", "seller", "sku", "address")
SEGMENT = "seller_segment"  # a seller in one market and category (seller governance)
WINDOWS = (30, 90, 365)
HORIZON_DAYS = max(WINDOWS)
# the reasons that blame the seller (or the goods): overturned when inspection finds nothing
FAULT_REASONS = frozenset({"DEFECTIVE", "NOT_AS_DESCRIBED", "DAMAGED_ON_ARRIVAL"})
WEAR_MARKS = ("worn", "used", "tags removed", "stain", "deodorant", "makeup", "perfume", "odour")
EMPTY_BOX_RATIO = 0.3  # under this share of the expected weight: nothing (or a brick) inside


@dataclass(frozen=True)
class Counted:
    """What one event adds to one key's rolling counts."""

    subject: str
    key: str
    at_ms: int
    counts: dict[str, int] = field(default_factory=dict)
    members: dict[str, str] = field(default_factory=dict)


def counted_order(order: Mapping[str, Any]) -> list[Counted]:
    """An order placed: the buyer's, seller's and each SKU's orders, and the buyer behind
    its pickup address."""
    at = int(order["placed_at"])
    units = sum(int(line["quantity"]) for line in order["lines"])
    counted = [
        Counted("buyer", order["buyer_id"], at, {"orders": 1, "units": units}),
        Counted("seller", order["seller_id"], at, {"orders": 1, "units": units}),
    ]
    counted += [
        Counted("sku", line["sku"], at, {"units": int(line["quantity"])}) for line in order["lines"]
    ]
    if order.get("pickup_address"):
        counted.append(
            Counted(
                "address",
                address_key(order["pickup_address"]),
                at,
                {},
                {"buyers": order["buyer_id"]},
            )
        )
    return counted


def counted_return(request: Mapping[str, Any], at_ms: int) -> list[Counted]:
    """A return accepted: returns and value returned per buyer, seller and SKU, fault claims
    and their kind, and the buyer behind the pickup address."""
    fault = request["reason_code"] in FAULT_REASONS
    units = sum(_returned(line) for line in request["lines"])
    value = sum(
        int(line["unit_price"]["amount_minor"]) * _returned(line) for line in request["lines"]
    )
    reason = request["reason_code"].lower()
    per_return = {"returns": 1, "units_returned": units, "fault_claims": int(fault)}
    counted = [
        Counted("buyer", request["buyer_id"], at_ms, per_return | {"value_returned": value}),
        Counted("seller", request["seller_id"], at_ms, per_return | {f"reason_{reason}": 1}),
        Counted(
            "address",
            address_key(request["pickup_address"]),
            at_ms,
            {"returns": 1},
            {"buyers": request["buyer_id"]},
        ),
    ]
    counted += [
        Counted("sku", line["sku"], at_ms, {"units_returned": _returned(line)})
        for line in request["lines"]
    ]
    counted.append(
        Counted(
            SEGMENT,
            segment_key(request),
            at_ms,
            {"returns": 1, "fault_claims": int(fault), f"reason_{reason}": 1},
        )
    )
    return counted


def segment_key(request: Mapping[str, Any]) -> str:
    """A seller in one market and category: what seller governance compares with peers."""
    return f"{request['seller_id']}|{request.get('market', '')}|{request['category']}"


def _returned(line: Mapping[str, Any]) -> int:
    """Units returned on a request line (`quantity_returned` in ReturnRequested, `quantity`
    in a buyer's HTTP body)."""
    return int(line.get("quantity_returned", line.get("quantity", 0)))


@dataclass(frozen=True)
class ItemFacts:
    """What the inspection says about the return at hand."""

    category: str
    days_kept: int
    weight_ratio: float | None  # measured ÷ expected, the lightest item; None: not weighed
    serial_shipped: bool | None  # every scanned serial was shipped on the order; None: unknown
    matches_order: bool
    worn: bool
    fault_claim: bool
    fault_found: bool  # a grade below A, or a note saying what is wrong

    @property
    def overturned(self) -> bool:
        """A seller-fault claim the inspection found nothing behind."""
        return self.fault_claim and not self.fault_found

    @property
    def fraud(self) -> bool:
        """An empty box or a swapped item: confirmed at inspection."""
        empty = self.weight_ratio is not None and self.weight_ratio < EMPTY_BOX_RATIO
        return empty or self.serial_shipped is False or not self.matches_order


def item_facts(
    request: Mapping[str, Any],
    items: Iterable[Mapping[str, Any]],
    shipped_serials: Iterable[str] | None,
    inspected_at_ms: int,
) -> ItemFacts:
    """The facts of one inspection, against the order's shipped serials (None: the order
    is not known, so neither is the serial check)."""
    scanned = list(items)
    ratios = [
        item["measured_weight_grams"] / item["expected_weight_grams"]
        for item in scanned
        if item.get("expected_weight_grams")
    ]
    serials = [item["serial"] for item in scanned if item.get("serial")]
    shipped = None if shipped_serials is None else set(shipped_serials)
    notes = " ".join(str(item.get("notes", "")).lower() for item in scanned)
    grades = [item["grade"] for item in scanned]
    return ItemFacts(
        category=str(request["category"]),
        days_kept=max(0, (inspected_at_ms - int(request["delivered_at"])) // DAY_MS),
        weight_ratio=round(min(ratios), 4) if ratios else None,
        serial_shipped=None
        if shipped is None or not serials
        else all(s in shipped for s in serials),
        matches_order=all(bool(item.get("matches_order", True)) for item in scanned),
        worn=any(grade in ("B", "C") for grade in grades) and any(m in notes for m in WEAR_MARKS),
        fault_claim=request["reason_code"] in FAULT_REASONS,
        fault_found=any(grade in ("C", "D") for grade in grades) or "defect" in notes,
    )


def counted_inspection(request: Mapping[str, Any], facts: ItemFacts, at_ms: int) -> list[Counted]:
    """What an inspection adds to its buyer's and seller's counts (after the decision)."""
    buyer = {
        "overturned_claims": int(facts.overturned),
        "worn_returns": int(facts.worn),
        "confirmed_fraud": int(facts.fraud),
    }
    seller = {"defects_found": int(facts.fault_claim and facts.fault_found)}
    return [
        Counted("buyer", request["buyer_id"], at_ms, buyer),
        Counted("seller", request["seller_id"], at_ms, seller),
        Counted(SEGMENT, segment_key(request), at_ms, seller),
    ]


def apply(keys: dict[tuple[str, str], RollingCounts], counted: Iterable[Counted]) -> None:
    """Add what was counted to the keys' rolling counts (made on first use)."""
    for item in counted:
        window = keys.setdefault((item.subject, item.key), RollingCounts(HORIZON_DAYS))
        window.add(item.at_ms, item.counts, item.members)


def return_features(
    request: Mapping[str, Any],
    facts: ItemFacts | None,
    keys: Mapping[tuple[str, str], RollingCounts],
    as_of_ms: int,
) -> dict[str, FeatureValue]:
    """The features the rules read for one return, as of `as_of_ms`."""
    features: dict[str, FeatureValue] = {}
    buyer = keys.get(("buyer", request["buyer_id"]))
    seller = keys.get(("seller", request["seller_id"]))
    address = keys.get(("address", address_key(request["pickup_address"])))
    for subject, window in (("buyer", buyer), ("seller", seller)):
        if window is None:
            continue
        for days in WINDOWS:
            returns = window.total("returns", as_of_ms, days)
            orders = window.total("orders", as_of_ms, days)
            features[f"{subject}.returns_{days}d"] = returns
            features[f"{subject}.orders_{days}d"] = orders
            features[f"{subject}.return_rate_{days}d"] = (
                round(returns / orders, 4) if orders else 0.0
            )
    if buyer is not None:
        claims = buyer.total("fault_claims", as_of_ms, 365)
        overturned = buyer.total("overturned_claims", as_of_ms, 365)
        features["buyer.fault_claims_365d"] = claims
        features["buyer.overturned_share_365d"] = round(overturned / claims, 4) if claims else 0.0
        features["buyer.worn_returns_90d"] = buyer.total("worn_returns", as_of_ms, 90)
        features["buyer.confirmed_fraud_365d"] = buyer.total("confirmed_fraud", as_of_ms, 365)
        features["buyer.value_returned_90d"] = buyer.total("value_returned", as_of_ms, 90)
    if address is not None:
        features["address.buyers_90d"] = address.distinct("buyers", as_of_ms, 90)[0]
    if facts is not None:
        features |= {
            "item.category": facts.category,
            "item.days_kept": facts.days_kept,
            "item.worn": facts.worn,
            "item.matches_order": facts.matches_order,
            "item.fault_claim": facts.fault_claim,
            "item.overturned": facts.overturned,
        }
        if facts.weight_ratio is not None:
            features["item.weight_ratio"] = facts.weight_ratio
        if facts.serial_shipped is not None:
            features["item.serial_shipped"] = facts.serial_shipped
    return features


def known_features() -> frozenset[str]:
    """Every feature `return_features` can give: a rule reading any other never fires."""
    names = {
        f"{subject}.{figure}_{days}d"
        for subject in ("buyer", "seller")
        for figure in ("returns", "orders", "return_rate")
        for days in WINDOWS
    }
    names |= {
        "buyer.fault_claims_365d",
        "buyer.overturned_share_365d",
        "buyer.worn_returns_90d",
        "buyer.confirmed_fraud_365d",
        "buyer.value_returned_90d",
        "address.buyers_90d",
        "item.category",
        "item.days_kept",
        "item.worn",
        "item.matches_order",
        "item.fault_claim",
        "item.overturned",
        "item.weight_ratio",
        "item.serial_shipped",
    }
    return frozenset(names)


ADDRESS_PSEUDONYM = "addr:"


def address_key(address: str) -> str:
    """One address however it is typed (case, spaces, punctuation), as a pseudonym: the
    risk service counts and keeps addresses by it, never in clear (a pseudonym given
    again is itself)."""
    if address.startswith(ADDRESS_PSEUDONYM):
        return address
    normalized = " ".join("".join(c if c.isalnum() else " " for c in address.lower()).split())
    return ADDRESS_PSEUDONYM + hashlib.sha256(normalized.encode()).hexdigest()[:24]
