"""A year of order and return history with seeded abusers (for the demo and the back-test).

Honest buyers order a few times a year and return a few things. Among them the world seeds
serial returners, wardrobers (apparel worn and returned within days), empty-box and
item-swap fraudsters, claim abusers (defect claims inspection finds nothing behind) and one
ring of buyers behind a single pickup address typed several ways. Every event has its own
past event time, so the risk windows have data.

The labels (who is an abuser) are returned apart from the events: the rules never see them,
they are only used to score what the rules caught.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from services.decisions.risk.history_replay import HistoryEvent
from services.decisions.risk.rolling_counts import DAY_MS

ABUSE_KINDS = ("serial", "wardrobe", "empty_box", "swap", "claims", "ring")
RING_ADDRESSES = ("Block 4, Salmiya", "block 4 salmiya", "BLOCK 4 - SALMIYA", "Block-4 Salmiya")


@dataclass
class World:
    events: list[HistoryEvent] = field(default_factory=list)
    labels: dict[str, str | None] = field(default_factory=dict)  # return id → abuse kind
    buyers: dict[str, str | None] = field(default_factory=dict)  # buyer → abuse kind


def draw_world(rng: random.Random, now_ms: int, honest: int = 200, per_kind: int = 6) -> World:
    world = World()
    kinds = [None] * honest + [kind for kind in ABUSE_KINDS for _ in range(per_kind)]
    for n, kind in enumerate(kinds):
        buyer = f"B-{n:04d}"  # nothing in an id says who abuses
        world.buyers[buyer] = kind
        _buyer_year(rng, world, buyer, kind, n, now_ms)
    return world


def _buyer_year(
    rng: random.Random, world: World, buyer: str, kind: str | None, n: int, now_ms: int
) -> None:
    orders = rng.randint(10, 18) if kind == "serial" else rng.randint(3, 10)
    address = RING_ADDRESSES[n % len(RING_ADDRESSES)] if kind == "ring" else f"Street {n}"
    for o in range(orders):
        placed = now_ms - rng.randint(5, 360) * DAY_MS
        order_ref, serial = f"O-{buyer}-{o}", f"SN-{buyer}-{o}"
        category = "apparel" if kind == "wardrobe" or rng.random() < 0.3 else "home"
        world.events.append(
            HistoryEvent("OrderPlaced", placed, _order(order_ref, buyer, address, placed, serial))
        )
        if not _returns(rng, kind):
            continue
        return_id = f"R-{buyer}-{o}"
        reason = "DEFECTIVE" if kind == "claims" else rng.choice(["CHANGED_MIND", "WRONG_SIZE"])
        kept = rng.randint(1, 6) if kind == "wardrobe" else rng.randint(3, 25)
        accepted, inspected = placed + kept * DAY_MS, placed + (kept + 3) * DAY_MS
        if inspected >= now_ms:
            continue
        request = _request(return_id, order_ref, buyer, address, category, reason, placed + DAY_MS)
        world.events.append(
            HistoryEvent(
                "ReturnAccepted",
                accepted,
                {"envelope": {"return_id": return_id}, "requested": request},
            )
        )
        item = _item(rng, kind, serial)
        world.events.append(
            HistoryEvent(
                "InspectionRecorded",
                inspected,
                {"envelope": {"return_id": return_id}, "items": [item]},
            )
        )
        world.labels[return_id] = kind


def _returns(rng: random.Random, kind: str | None) -> bool:
    share = {"serial": 0.85, "wardrobe": 0.7, "claims": 0.6, "ring": 0.5}.get(kind or "", 0.15)
    if kind in ("empty_box", "swap"):
        share = 0.4
    return rng.random() < share


def _item(rng: random.Random, kind: str | None, serial: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "sku": "SKU-1",
        "serial": serial,
        "grade": "A" if rng.random() < 0.8 else "B",
        "matches_order": True,
        "measured_weight_grams": rng.randint(950, 1050),
        "expected_weight_grams": 1000,
        "notes": "",
    }
    if kind == "wardrobe":
        item |= {"grade": "B", "notes": "worn, tags removed"}
    elif kind == "empty_box":
        item |= {"measured_weight_grams": rng.randint(20, 120)}
    elif kind == "swap":
        item |= {"serial": f"SN-OTHER-{rng.randint(0, 10**6)}"}
    return item


def _order(order_ref: str, buyer: str, address: str, placed: int, serial: str) -> dict[str, Any]:
    return {
        "envelope": {"return_id": order_ref},
        "order": {
            "order_ref": order_ref,
            "buyer_id": buyer,
            "seller_id": "S-1",
            "placed_at": placed,
            "pickup_address": address,
            "lines": [{"sku": "SKU-1", "quantity": 1, "serials": [serial]}],
        },
    }


def _request(
    return_id: str,
    order_ref: str,
    buyer: str,
    address: str,
    category: str,
    reason: str,
    delivered: int,
) -> dict[str, Any]:
    return {
        "envelope": {"return_id": return_id},
        "order_ref": order_ref,
        "buyer_id": buyer,
        "seller_id": "S-1",
        "category": category,
        "reason_code": reason,
        "pickup_address": address,
        "delivered_at": delivered,
        "lines": [{"sku": "SKU-1", "quantity_returned": 1, "unit_price": {"amount_minor": 4_999}}],
    }
