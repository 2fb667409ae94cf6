"""`boomerang risk backtest` on a real broker: a history of orders, accepted returns and
inspections (written with event times of their own, a year ahead, so nothing else on the
session's topics falls in the judged range) replayed through the live rule set; each rule's
hits, precision and recall as the inspections confirmed them."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer

from services.eventing.avro_codec import AvroCodec
from services.eventing.event_publisher import EventPublisher, producer_settings
from services.eventing.topics import ORDERS
from services.tools.partners.marketplace_orders import order_event, order_record
from tests.support.cli_process import run_cli
from tests.support.return_events import event, inspected_item

LIVE = Path(__file__).resolve().parents[2] / "deploy" / "risk" / "live.yaml"
DAY_MS = 86_400_000


def history(run: str, start_ms: int) -> list[tuple[str, dict]]:
    """Three buyers, an order and a return each: an honest one, an empty box, a swap."""
    records: list[tuple[str, dict]] = []
    for n, (kind, item) in enumerate(
        [
            ("honest", {"serial": f"SN-{run}-0", "measured_weight_grams": 400}),
            ("empty", {"serial": f"SN-{run}-1", "measured_weight_grams": 30}),
            ("swap", {"serial": "SN-NOT-SHIPPED", "measured_weight_grams": 400}),
        ]
    ):
        buyer, order_ref, return_id = f"B-{run}-{kind}", f"O-{run}-{n}", f"RMA-{run}-{n}"
        placed = start_ms + n * 3_600_000
        order = order_record(
            {
                "order_ref": order_ref,
                "market": "DE",
                "buyer_id": buyer,
                "seller_id": f"S-{run}",
                "currency": "EUR",
                "seller_currency": "EUR",
                "pickup_address": f"Street {run} {n}",
                "lines": [
                    {
                        "line_id": "L1",
                        "sku": "SKU-RED-M",
                        "quantity": 1,
                        "unit_price_minor": 1999,
                        "commission_bps": 1000,
                        "serials": [f"SN-{run}-{n}"],
                    }
                ],
            },
            placed,
        )
        records.append(("OrderPlaced", order_event("OrderPlaced", order, placed)))
        accepted_at, inspected_at = placed + 5 * DAY_MS, placed + 8 * DAY_MS
        request = event(
            "ReturnRequested",
            return_id,
            order_ref=order_ref,
            buyer_id=buyer,
            seller_id=f"S-{run}",
            pickup_address=f"Street {run} {n}",
            delivered_at=placed + DAY_MS,
            envelope={"occurred_at": accepted_at},
        )
        records.append(
            (
                "ReturnAccepted",
                event(
                    "ReturnAccepted",
                    return_id,
                    requested=request,
                    envelope={"occurred_at": accepted_at},
                ),
            )
        )
        records.append(
            (
                "InspectionRecorded",
                event(
                    "InspectionRecorded",
                    return_id,
                    items=[inspected_item(**item)],
                    envelope={"occurred_at": inspected_at},
                ),
            )
        )
    return records


async def publish(bootstrap: str, codec: AvroCodec, records: list[tuple[str, dict]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        publisher = EventPublisher(producer, codec)
        for name, record in records:
            await publisher.publish(name, record, ORDERS.name if name == "OrderPlaced" else None)
    finally:
        await producer.stop()


def test_a_backtest_replays_the_history_and_scores_each_rule(
    catalogue_topics: str, codec: AvroCodec
) -> None:
    run = uuid.uuid4().hex[:6]
    start = datetime.now(UTC) + timedelta(days=365)
    start_ms = int(start.timestamp() * 1000)
    asyncio.run(publish(catalogue_topics, codec, history(run, start_ms)))
    to = start + timedelta(days=30)

    done = run_cli(
        catalogue_topics,
        "risk",
        "backtest",
        "--rules",
        str(LIVE),
        "--from",
        start.isoformat(),
        "--to",
        to.isoformat(),
        "--json",
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    rules = {row["rule_id"]: row for row in report["rules"]}
    assert report["returns_judged"] == 3
    assert report["outcomes"] == {"approve": 1, "hold": 2}
    assert (rules["empty-box"]["hits"], rules["empty-box"]["precision"]) == (1, 1.0)
    assert (rules["item-swap"]["hits"], rules["item-swap"]["precision"]) == (1, 1.0)
    assert rules["empty-box"]["recall"] == rules["item-swap"]["recall"] == 0.5  # 2 confirmed
    assert rules["serial-returner"]["hits"] == 0 and rules["serial-returner"]["precision"] is None

    plain = run_cli(
        catalogue_topics,
        "risk",
        "backtest",
        "--rules",
        str(LIVE),
        "--from",
        start.isoformat(),
        "--to",
        to.isoformat(),
    )
    assert "3 returns judged" in plain.stdout and "empty-box" in plain.stdout
