"""The demo's risk world: a year of history with seeded abusers and bad sellers, abusers'
returns among the drawn ones, a reviewer double working the queue, and the figures.

- **History.** `risk_history.draw_world` draws a year of orders, returns and inspections
  (honest buyers, serial returners, wardrobers, empty boxes, swaps, claim abusers and a ring
  behind one address typed four ways) and twenty sellers' last 80 days in one category, two of
  them with far more defects than their peers. It is written to `boomerang.risk.counts`
  as the risk service counts events (the same pure functions, each increment at its own
  past event time), not to the returns topics: those would start sagas for returns long
  finished. The increments are stamped with one fixed source, so a demo run again on the
  same broker adds nothing twice.
- **Abusers' returns.** Of the run's N returns, up to 4 per kind come from seeded abusers:
  their buyer ids and addresses, and what the scanner finds (a light parcel, a serial the
  order never shipped, wear, nothing behind a defect claim). Half the swaps come from
  buyers with an honest year behind them: a first swap is held for a person, a repeat
  fraudster's declined.
- **A reviewer double** works the queue (`GET /reviews`) while the run goes on: it denies
  what the demo seeded as abuse and approves the rest, as a person looking at the parcel
  would. The labels are read here and to score; the rules never see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from services.decisions.risk.count_records import (
    Increment,
    merged,
    order_increments,
    return_increments,
)
from services.decisions.risk.return_features import counted_inspection, item_facts
from services.decisions.risk.rolling_counts import DAY_MS
from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.envelope import deterministic_event_id
from services.eventing.event_publisher import producer_settings
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import RISK_COUNTS, RISK_EVENTS, RISK_SELLERS
from services.risk.handlers import counted_record
from services.tools.local_stack.drawn_returns import (
    PHOTO_REASONS,
    TrackedReturn,
    expected_refund,
    random_return,
)
from services.tools.local_stack.risk_history import ABUSE_KINDS, RING_ADDRESSES, World, draw_world
from services.tools.local_stack.stack import REVIEWER_TOKENS
from services.tools.oncall.topic_reader import read_topic

HISTORY_SOURCE = "demo-history:0"  # one fixed source: a second seeding adds nothing
PER_KIND = 4  # abusers' returns per kind in a run of 150 or more
GOVERNED_CATEGORY = "electronics"
BAD_SELLERS = ("S-GOV-BAD-1", "S-GOV-BAD-2")
HONEST_SELLERS = tuple(f"S-GOV-{n}" for n in range(1, 19))
CODEC = AvroCodec(SchemaCatalogue.load())


def draw_risk_world(seed: int, now_ms: int) -> World:
    return draw_world(random.Random(seed), now_ms, honest=200, per_kind=6)


def write_history(world: World, path: Path) -> None:
    """The drawn history as JSON lines {name, at_ms, record} (`boomerang risk backtest
    --history`); the labels are not in it."""
    with path.open("w") as out:
        for event in sorted(world.events, key=lambda e: e.at_ms):
            out.write(
                json.dumps({"name": event.name, "at_ms": event.at_ms, "record": event.record})
                + "\n"
            )


def history_increments(world: World, now_ms: int, seed: int) -> list[Increment]:
    """The history as the risk service would have counted it, in event-time order."""
    increments: list[Increment] = []
    shipped: dict[str, list[str]] = {}
    requests: dict[str, dict[str, Any]] = {}
    for event in sorted(world.events, key=lambda e: e.at_ms):
        if event.name == "OrderPlaced":
            order = event.record["order"]
            shipped[order["order_ref"]] = [s for ln in order["lines"] for s in ln["serials"]]
            increments += order_increments(order)
        elif event.name == "ReturnAccepted":
            request = {**event.record["requested"], "market": "DE"}
            requests[request["envelope"]["return_id"]] = request
            increments += return_increments(request, event.at_ms)
        else:
            request = requests[event.record["envelope"]["return_id"]]
            items = event.record["items"]
            facts = item_facts(request, items, shipped.get(request["order_ref"]), event.at_ms)
            increments += merged(counted_inspection(request, facts, event.at_ms))
    # in event-time order, as a live system counts them: a sweep that judges sellers while
    # the seeding is still folded sees every seller up to the same day (seeded seller by
    # seller, the last sellers were judged on part of their history and one was flagged)
    every = increments + seller_history(random.Random(seed), now_ms)
    return sorted(every, key=lambda increment: increment.at_ms)


def seller_history(rng: random.Random, now_ms: int) -> list[Increment]:
    """Twenty sellers' last 80 days in one category and market: 60 orders and 30 returns each;
    the two bad ones' defect claims are confirmed at inspection 60 % of the time, the
    honest ones' 3-10 %."""
    increments: list[Increment] = []
    for seller in (*HONEST_SELLERS, *BAD_SELLERS):
        defects = 0.6 if seller in BAD_SELLERS else rng.uniform(0.03, 0.1)
        for n in range(60):
            at = now_ms - rng.randint(2, 80) * DAY_MS
            buyer = f"B-gov-{seller}-{n}"
            order = {
                "order_ref": f"O-{seller}-{n}",
                "buyer_id": buyer,
                "seller_id": seller,
                "placed_at": at,
                "pickup_address": f"Govstrasse {seller} {n}",
                "lines": [{"sku": f"SKU-{seller}", "quantity": 1, "serials": []}],
            }
            increments += order_increments(order)
            if n % 2:
                continue
            defective = rng.random() < defects
            request = {
                "order_ref": order["order_ref"],
                "buyer_id": buyer,
                "seller_id": seller,
                "category": GOVERNED_CATEGORY,
                "market": "DE",
                "reason_code": "DEFECTIVE" if defective else "WRONG_SIZE",
                "pickup_address": order["pickup_address"],
                "delivered_at": at + DAY_MS,
                "lines": [
                    {
                        "sku": order["lines"][0]["sku"],
                        "quantity": 1,
                        "unit_price": {"amount_minor": 5000},
                    }
                ],
            }
            returned = at + 5 * DAY_MS
            increments += return_increments(request, returned)
            item = {"sku": request["lines"][0]["sku"], "grade": "D" if defective else "A"}
            item |= {"matches_order": True, "notes": "defect confirmed" if defective else ""}
            facts = item_facts(request, [item], None, returned + DAY_MS)
            increments += merged(counted_inspection(request, facts, returned + DAY_MS))
    return increments


async def seed_history(bootstrap: str, increments: list[Increment]) -> int:
    """Write the increments to the counts topic, keyed by subject:key; how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        sent = []
        for offset, increment in enumerate(increments):
            event_id = deterministic_event_id(HISTORY_SOURCE, str(offset))
            source_id = f"{increment.subject}-{increment.key}"
            record = counted_record(increment, source_id, event_id, HISTORY_SOURCE, offset)
            sent.append(
                await producer.send(
                    RISK_COUNTS.name,
                    CODEC.encode("RiskCounted", record),
                    key=increment.table_key.encode(),
                )
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return len(increments)


# ------------------------------------------------------------------- abusers' returns


def abusers_returns(
    world: World, rng: random.Random, run_id: str, first_index: int, per_kind: int
) -> list[TrackedReturn]:
    """`per_kind` returns of each abuse kind, from seeded abusers (their buyer ids and
    addresses), each with what the scanner will find."""
    tracked = []
    index = first_index
    honest = sorted(b for b, k in world.buyers.items() if k is None)
    for kind in ABUSE_KINDS:
        buyers = sorted(b for b, k in world.buyers.items() if k == kind)[:per_kind]
        if kind == "swap":  # half of them first-time swappers: an honest year behind them
            first_timers = per_kind // 2
            buyers = buyers[: per_kind - first_timers] + honest[len(honest) - first_timers :]
        for buyer in buyers:
            tracked.append(_abusive_return(rng, run_id, index, kind, buyer))
            index += 1
    return tracked


def _abusive_return(
    rng: random.Random, run_id: str, index: int, kind: str, buyer: str
) -> TrackedReturn:
    number = int(buyer.rpartition("-")[2])
    for _ in range(100):
        body, grades = random_return(rng, index, run_id, exchange_share=0.0, markets=("DE",))
        body.pop("order", None)  # the order as the marketplace placed it: no snapshot needed
        body |= {"buyer_id": buyer, "pickup_address": f"Street {number}"}
        changes: dict[str, Any] = {}
        if kind == "ring":
            body["pickup_address"] = RING_ADDRESSES[number % len(RING_ADDRESSES)]
        elif kind == "wardrobe":
            delivered = datetime.now(UTC) - timedelta(days=2)
            body |= {"category": "apparel", "reason_code": "WRONG_SIZE"}
            body["delivered_at"] = delivered.date().isoformat()
            grades = ["B"] * len(grades)
            changes = {"notes": "worn, tags removed, deodorant marks"}
        elif kind == "empty_box":
            changes = {"measured_weight_grams": 40, "expected_weight_grams": 1000}
        elif kind == "swap":
            changes = {"serial": f"SN-OTHER-{run_id}-{index}"}
        elif kind == "claims":
            body["reason_code"] = "DEFECTIVE"
            grades = ["A"] * len(grades)
        if body["reason_code"] in PHOTO_REASONS:
            body["photo_refs"] = [f"photo://{run_id}/{index}-{n}.jpg" for n in range(2)]
        try:
            expected = expected_refund(body, grades)
        except ValueError:
            continue
        return TrackedReturn(
            index,
            f"demo-{run_id}-{index}",
            body,
            expected.amount_minor,
            grades,
            False,
            expected.method,
            expected.liable,
            abuse=kind,
            item_changes=changes,
        )
    raise RuntimeError(f"no {kind} return the policies accept in 100 draws")


# ------------------------------------------------------------------- the reviewer double


async def review_queue(
    risk_url: str, abuse_of: Callable[[str], str | None], stop: asyncio.Event, given: Counter
) -> None:
    """Work the queue until `stop`: deny seeded abuse, approve the rest (`given` counts the
    verdicts on the run's returns by verdict)."""
    headers = {"Authorization": f"Bearer {REVIEWER_TOKENS['reviewer-1']}"}
    async with httpx.AsyncClient(timeout=10.0) as http:
        while not stop.is_set():
            try:
                queue = await http.get(f"{risk_url}/reviews", headers=headers)
                cases = queue.json().get("cases", []) if queue.status_code == 200 else []
                for case in cases:
                    kind = abuse_of(case["return_id"])
                    verdict = "deny" if kind else "approve"
                    reason = f"parcel checked: {kind}" if kind else "parcel checked: as sold"
                    answer = await http.post(
                        f"{risk_url}/reviews/{case['return_id']}/verdict",
                        json={"verdict": verdict, "reason": reason},
                        headers=headers,
                    )
                    if answer.status_code == 200 and not answer.json()["repeated"]:
                        given[verdict] += 1
            except httpx.HTTPError:
                pass  # the risk service restarting: the queue is worked again shortly
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)


# ------------------------------------------------------------------- figures


async def decisions_of(bootstrap: str, return_ids: set[str]) -> dict[str, dict[str, Any]]:
    """The first RiskDecided of each of the run's returns."""
    found: dict[str, dict[str, Any]] = {}
    for message in await read_topic(bootstrap, RISK_EVENTS.name, RISK_EVENTS.partitions):
        try:
            decoded = CODEC.decode(message.value)
        except CodecError:
            continue
        return_id = decoded.record["envelope"]["return_id"]
        if decoded.name == "RiskDecided" and return_id in return_ids:
            found.setdefault(return_id, decoded.record)
    return found


async def sellers_flagged(bootstrap: str) -> dict[str, str]:
    """The latest standing per seller and market that is not good: `seller|market` → it."""
    latest: dict[str, str] = {}
    for message in await read_topic(bootstrap, RISK_SELLERS.name, RISK_SELLERS.partitions):
        try:
            record = CODEC.decode(message.value).record
        except CodecError:
            continue
        latest[f"{record['seller_id']}|{record['market']}"] = record["standing"]
    return {key: standing for key, standing in latest.items() if standing != "good"}


def risk_figures(
    tracked: list[TrackedReturn],
    decisions: dict[str, dict[str, Any]],
    verdicts: Counter,
    flagged: dict[str, str],
) -> dict[str, Any]:
    abusive = [t for t in tracked if t.abuse]
    honest = [t for t in tracked if not t.abuse]

    def outcome(t: TrackedReturn) -> str | None:
        decided = decisions.get(t.return_id)
        return decided["outcome"] if decided else None

    caught = [
        t
        for t in abusive
        if outcome(t) in ("review", "hold", "decline") or t.terminal == "ReturnFailed"
    ]
    held = [t for t in tracked if outcome(t) == "hold"]
    flagged_sellers = {key.partition("|")[0] for key in flagged}
    return {
        "abuse_injected": len(abusive),
        "abuse_caught": len(caught),
        "abuse_caught_by_kind": dict(Counter(t.abuse for t in caught)),
        "abuse_missed": sorted(f"{t.abuse}:{t.return_id}" for t in abusive if t not in caught),
        "false_holds": sum(outcome(t) == "hold" for t in honest),
        "honest_returns": len(honest),
        "risk_outcomes": dict(Counter(outcome(t) or "none" for t in tracked)),
        "held_for_review": len(held),
        "held_unfinished": sum(not t.terminal for t in held),
        "reviewed": sum(verdicts.values()),
        "review_verdicts": dict(verdicts),
        "sellers_flagged": len(flagged_sellers),
        "sellers_flagged_wrongly": len(flagged_sellers - set(BAD_SELLERS)),
        "sellers_bad_not_flagged": len(set(BAD_SELLERS) - flagged_sellers),
    }


def risk_passed(figures: dict[str, Any]) -> bool:
    """Caught 90 % of the abuse, held at most 2 % of honest returns, every held return
    reviewed and finished, only the bad sellers flagged."""
    injected = figures["abuse_injected"]
    return (
        figures["abuse_caught"] * 10 >= injected * 9
        and figures["false_holds"] * 50 <= figures["honest_returns"]
        and figures["held_unfinished"] == 0
        and figures["sellers_flagged_wrongly"] == 0
        and figures["sellers_bad_not_flagged"] == 0
    )
