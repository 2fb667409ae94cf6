"""Settlement in the running system (real Kafka, real PostgreSQL, every service an OS
process): returns with their orders are booked once, balanced; a replay of the refund topic
books nothing; a cycle closed twice has one set of statements; a completion that comes after
its cycle closed lands in the next one."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from psycopg import AsyncConnection

from services.decisions.event_ids import envelope_of
from services.decisions.settlement.cycles import cycle, cycle_number
from services.eventing.avro_codec import AvroCodec
from services.eventing.event_publisher import EventPublisher
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import REFUND_EVENTS, SAGA_EVENTS
from services.settlement.cycle_calendar import CycleCalendar
from services.tools.local_stack.demo_settlement import ledger_figures, wait_for_ledger
from services.tools.local_stack.loop_driver import LoopDriver
from services.tools.local_stack.stack import FINANCE_TOKEN, LEDGER
from tests.support.cli_process import run_cli

FINANCE = {"Authorization": f"Bearer {FINANCE_TOKEN}"}


async def entries_of(database_url: str, return_ids: list[str]) -> list[tuple[str, str]]:
    async with await AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT return_id, step FROM journal_entries WHERE return_id = ANY(%s)"
            " ORDER BY return_id, step",
            (return_ids,),
        )
        return [(r, s) for r, s in await cursor.fetchall()]


def test_returns_are_settled_once_and_a_replay_of_the_refund_topic_books_nothing(
    stack, kafka_bootstrap
) -> None:
    started = datetime.now(UTC)
    driver = LoopDriver(stack, kafka_bootstrap, returns=8, seed=23)
    asyncio.run(driver.run(180))
    assert all(t.terminal == "ReturnCompleted" for t in driver.tracked), [
        (t.return_id, t.terminal, t.errors[-1:]) for t in driver.tracked
    ]
    assert asyncio.run(wait_for_ledger(stack, 120))
    ours = [t.return_id for t in driver.tracked]
    booked = asyncio.run(entries_of(stack.database_url, ours))
    paid = [t for t in driver.tracked if t.expected_minor > 0]
    assert len(booked) == len(set(booked))
    assert {r for r, step in booked if step == "liability"} == {t.return_id for t in paid}
    refunded = {r for r, step in booked if step.startswith("refund:")}
    assert refunded == {t.return_id for t in paid}  # store credit too (its own account)
    assert asyncio.run(ledger_figures(stack))["ledger_balanced"]
    health_before = httpx.get(f"{stack.url(LEDGER)}/health").json()

    replay = run_cli(
        kafka_bootstrap,
        "replay",
        "--topic",
        REFUND_EVENTS.name,
        "--from-time",
        started.isoformat().replace("+00:00", "Z"),
        *[arg for return_id in ours for arg in ("--return-id", return_id)],
        "--execute",
        "--reason",
        "e2e: a replay of the refund topic books nothing",
    )
    assert replay.returncode == 0, replay.stderr
    time.sleep(1)
    assert asyncio.run(wait_for_ledger(stack, 120))
    assert asyncio.run(entries_of(stack.database_url, ours)) == booked
    health = httpx.get(f"{stack.url(LEDGER)}/health").json()
    assert health["duplicates"] > health_before["duplicates"]  # read again, booked nothing
    assert asyncio.run(ledger_figures(stack))["ledger_balanced"]


def completion(order_ref: str, return_id: str, completed_at: int, price: int) -> dict[str, Any]:
    line = {
        "line_id": "L1",
        "sku": "SKU-LATE",
        "quantity": 1,
        "currency": "EUR",
        "unit_price_minor": price,
        "gross_minor": price,
        "discount_minor": 0,
        "goods_minor": price,
        "tax_minor": 0,
        "tax_included_minor": 0,
        "shipping_minor": 0,
        "return_shipping_minor": 0,
        "restocking_fee_minor": 0,
        "damage_deduction_minor": 0,
        "amount_minor": price,
    }
    return {
        "envelope": envelope_of(
            "ReturnCompleted",
            return_id,
            "coordinator",
            event_id=str(uuid.uuid4()),
            occurred_at=completed_at,
        ),
        "refunded": {"amount_minor": price, "currency": "EUR"},
        "completed_at": completed_at,
        "liable": "SELLER",
        "breakdown": [line],
        "method": "CARD",
        "provider": "psp",
        "provider_refund_id": f"rf_{return_id}",
        "idempotency_key": f"{return_id}-refund-1",
        "order_ref": order_ref,
        "carrier_id": None,
    }


async def publish_completions(bootstrap: str, records: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        publisher = EventPublisher(producer, AvroCodec(SchemaCatalogue.load()))
        for record in records:
            await publisher.publish("ReturnCompleted", record, SAGA_EVENTS.name)
    finally:
        await producer.stop()


def place_order(marketplace: str, order_ref: str, seller: str, unit_price: int) -> None:
    """The marketplace places a DE order of two units of SKU-LATE, in EUR."""
    line = {"line_id": "L1", "sku": "SKU-LATE", "quantity": 2, "unit_price_minor": unit_price}
    placed = httpx.post(
        f"{marketplace}/orders",
        json={
            "order_ref": order_ref,
            "market": "DE",
            "buyer_id": "B-1",
            "seller_id": seller,
            "currency": "EUR",
            "seller_currency": "EUR",
            "lines": [line | {"commission_bps": 1_000}],
        },
        timeout=10,
    )
    assert placed.status_code == 201, placed.text


def wait_until(condition, what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout_s}s: {what}")


def test_a_cycle_closed_twice_has_one_statement_set_and_a_late_completion_lands_next(
    stack, kafka_bootstrap
) -> None:
    settlement, marketplace = stack.url(LEDGER), stack.url("marketplace")
    seller, order_ref = f"S-e2e-{uuid.uuid4().hex[:6]}", f"O-late-{uuid.uuid4().hex[:8]}"
    place_order(marketplace, order_ref, seller, 5_000)
    rule, zone = CycleCalendar.from_env().rule_and_zone("DE")
    now_ms = int(time.time() * 1000)
    current = cycle_number(rule, zone, now_ms)
    last_week = cycle(rule, zone, current - 1)
    on_time, late = f"R-on-time-{uuid.uuid4().hex[:6]}", f"R-late-{uuid.uuid4().hex[:6]}"
    in_last_week = last_week.start_ms + 3_600_000

    asyncio.run(
        publish_completions(kafka_bootstrap, [completion(order_ref, on_time, in_last_week, 5_000)])
    )
    wait_until(lambda: asyncio.run(entries_of(stack.database_url, [on_time])), "on-time booked")

    first = httpx.post(f"{settlement}/cycles/DE/{current - 1}/close", timeout=30, headers=FINANCE)
    second = httpx.post(f"{settlement}/cycles/DE/{current - 1}/close", timeout=30, headers=FINANCE)
    assert first.status_code == second.status_code == 200, first.text
    mine = [s for s in first.json()["statements"] if s["seller_id"] == seller]
    assert len(mine) == 1 and [ln["return_id"] for ln in mine[0]["lines"]] == [on_time] * 2
    assert second.json() == first.json()  # closed again: the same statements, none new
    assert httpx.post(f"{settlement}/cycles/DE/{current}/close", headers=FINANCE).status_code == 409

    asyncio.run(
        publish_completions(kafka_bootstrap, [completion(order_ref, late, in_last_week, 5_000)])
    )

    def late_in_this_cycle() -> bool:
        drafted = httpx.get(
            f"{settlement}/cycles/DE/{current}/draft", timeout=30, headers=FINANCE
        ).json()
        return any(
            ln["return_id"] == late
            for s in drafted["statements"]
            if s["seller_id"] == seller
            for ln in s["lines"]
        )

    wait_until(late_in_this_cycle, "the late completion in the open cycle")
    closed = httpx.get(
        f"{settlement}/statements/{last_week.cycle_id}", timeout=30, headers=FINANCE
    ).json()
    assert closed["statements"] == first.json()["statements"]  # the closed cycle never changes
    token = httpx.post(f"{stack.url('marketplace')}/sellers/{seller}/tokens").json()["token"]
    as_seller = {"Authorization": f"Bearer {token}"}
    seller_statements = httpx.get(f"{settlement}/sellers/{seller}/statements", headers=as_seller)
    assert len(seller_statements.json()["statements"]) == 1
    other = httpx.get(f"{settlement}/sellers/S-someone-else/statements", headers=as_seller)
    assert other.status_code == 403
    # the seller's readable statement and its notification, in the market's language
    page = httpx.get(
        f"{settlement}/sellers/{seller}/statements/{last_week.cycle_id}",
        params={"format": "html"},
        headers=as_seller,
    )
    assert page.status_code == 200 and '<html lang="de"' in page.text and on_time in page.text
    told = httpx.get(
        f"{settlement}/sellers/{seller}/statements/{last_week.cycle_id}/notification",
        headers=as_seller,
    ).json()["notifications"][0]
    assert told["language"] == "de" and last_week.cycle_id in told["subject"]
    in_cycle = httpx.get(f"{settlement}/statements/{last_week.cycle_id}", headers=as_seller)
    assert {s["seller_id"] for s in in_cycle.json()["statements"]} == {seller}


def claim_of(database_url: str, return_id: str) -> tuple[str, int] | None:
    async def read() -> tuple[str, int] | None:
        async with await AsyncConnection.connect(database_url) as conn:
            cursor = await conn.execute(
                "SELECT status, paid_minor FROM carrier_claims WHERE return_id = %s", (return_id,)
            )
            row = await cursor.fetchone()
            return None if row is None else (row[0], row[1])

    return asyncio.run(read())


def test_a_carrier_claim_is_filed_then_paid_or_rejected_and_each_outcome_booked_once(
    stack, kafka_bootstrap
) -> None:
    marketplace, carrier = stack.url("marketplace"), stack.url("carrier")
    order_ref = f"O-claim-{uuid.uuid4().hex[:8]}"
    place_order(marketplace, order_ref, "S-claims", 4_000)
    paid_return, rejected_return = (f"R-claim-{n}-{uuid.uuid4().hex[:6]}" for n in (1, 2))
    now_ms = int(time.time() * 1000)
    damaged = completion(order_ref, paid_return, now_ms, 4_000) | {
        "liable": "CARRIER",
        "carrier_id": "double-express",
    }
    asyncio.run(publish_completions(kafka_bootstrap, [damaged]))

    status = wait_until(
        lambda: (
            (claim_of(stack.database_url, paid_return) or ("", 0))[0] == "paid"
            and claim_of(stack.database_url, paid_return)
        ),
        "the claim filed, accepted and paid",
    )
    assert status == ("paid", 4_000)
    answer = httpx.get(f"{carrier}/claims/CLM-{paid_return}", timeout=10).json()
    assert (answer["status"], answer["paid_minor"]) == ("paid", 4_000)
    steps = [step for _, step in asyncio.run(entries_of(stack.database_url, [paid_return]))]
    assert steps == ["claim:paid", "liability"]

    httpx.post(f"{carrier}/admin/faults", json={"claim_rejection_rate": 1.0}).raise_for_status()
    try:
        refused = completion(order_ref, rejected_return, now_ms, 4_000) | {
            "liable": "CARRIER",
            "carrier_id": "double-express",
        }
        asyncio.run(publish_completions(kafka_bootstrap, [refused]))
        wait_until(
            lambda: (claim_of(stack.database_url, rejected_return) or ("", 0))[0] == "rejected",
            "the claim filed and rejected",
        )
    finally:
        httpx.post(f"{carrier}/admin/faults", json={"claim_rejection_rate": 0.0})
    steps = [step for _, step in asyncio.run(entries_of(stack.database_url, [rejected_return]))]
    assert steps == ["claim:rejected", "liability"]
    balances = httpx.get(
        f"{stack.url(LEDGER)}/ledger/balances",
        params={"account": "carrier_claims"},
        headers=FINANCE,
    ).json()
    assert balances["ledger_balanced"]
    assert balances["balances"].get("carrier_claims_written_off:EUR", 0) >= 4_000
