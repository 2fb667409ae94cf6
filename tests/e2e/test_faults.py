"""Each fault kind alone, on the real processes, so a failure points at its cause."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.eventing.event_publisher import producer_settings
from services.eventing.topics import REFUND_COMMANDS, by_name, dead_letter_topic
from tests.e2e.scenario import (
    EXPECTED_REFUND_MINOR,
    TERMINAL,
    as_buyer_of,
    create_return,
    post_return,
    post_scan_when_ready,
    return_body,
    scan,
    set_partner_faults,
    signed_in,
    wait_for_status,
)


@pytest.fixture
def faults(stack, http) -> Iterator:
    """Set fault plans on the partner doubles; always cleared afterwards."""
    yield functools.partial(set_partner_faults, http, stack)
    for partner, off in (
        ("psp", {"error_rate": 0, "ghost_rate": 0, "decline_rate": 0, "latency_ms": 0}),
        (
            "carrier",
            {
                "error_rate": 0,
                "ghost_rate": 0,
                "attempt_failure_rate": 0,
                "max_failed_attempts": 0,
                "latency_ms": 0,
            },
        ),
    ):
        http.post(f"{stack.url(partner)}/admin/faults", json=off)


def _through_inspection(http, stack, **scan_changes) -> str:
    return_id = create_return(http, stack)
    body, headers = scan(return_id)
    body["items"] = [dict(item, **scan_changes) for item in body["items"]]
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    return return_id


def _paid(http, stack, return_id: str) -> list[dict]:
    answer = http.get(f"{stack.url('psp')}/refunds", params={"return_id": return_id}).json()
    return [r for r in answer["refunds"] if r["status"] in ("succeeded", "pending")]


def test_psp_transient_errors_are_retried_and_pay_exactly_once(stack, http, faults):
    faults("psp", error_rate=0.5, seed=3)
    return_ids = [_through_inspection(http, stack) for _ in range(4)]
    for return_id in return_ids:
        view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
        assert view["status"] == "COMPLETED", view["outcome"]
        [refund] = _paid(http, stack, return_id)
        assert refund["amount_minor"] == EXPECTED_REFUND_MINOR


def test_a_refund_paid_whose_answer_was_lost_is_found_again_not_paid_twice(stack, http, faults):
    faults("psp", ghost_rate=1.0)  # the PSP pays, then answers 503
    return_id = _through_inspection(http, stack)
    # The PSP pays and answers 503; the refund service's retry under the same key may find
    # the refund within milliseconds, so the saga's REFUND_PENDING can be too short to see:
    # wait for the payment itself.
    deadline = time.monotonic() + 60
    while not _paid(http, stack, return_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_paid(http, stack, return_id)) == 1
    faults("psp", ghost_rate=0)
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED"
    assert len(_paid(http, stack, return_id)) == 1


def test_a_permanent_decline_compensates_in_reverse_and_moves_no_money(stack, http, faults):
    faults("psp", decline_rate=1.0, decline_codes=["account_closed"])
    return_id = _through_inspection(http, stack)
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPENSATED", view["outcome"]
    assert "refund declined: account_closed" in view["outcome"]["reason"]
    # in reverse: the refund (nothing paid), its share of the order, the intake, the pickup
    assert view["compensation"]["done"][1:] == [
        "release-reservation",
        "reverse-intake",
        "cancel-pickup",
    ]
    assert _paid(http, stack, return_id) == []
    order_ref = view["request"]["order_ref"]
    ledger = http.get(f"{stack.url('refund')}/orders/{order_ref}/refunds").json()
    assert return_id in ledger["released_returns"]  # its units are free for a later return
    deadline = time.monotonic() + 30  # the ledger applies movements from their own topic
    while True:
        url = f"{stack.url('warehouse-intake')}/ledger"
        ledger = http.get(url, params={"sku": "SKU-E2E-2"}).json()
        quarantined = [
            e for e in ledger.get("entries", []) if e["location"].endswith("/QUARANTINE")
        ]
        if any(e["on_hand"] > 0 for e in quarantined) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert any(e["on_hand"] > 0 for e in quarantined), ledger


def test_a_buyer_never_at_home_gets_the_return_cancelled_with_the_carrier(stack, http, faults):
    faults("carrier", attempt_failure_rate=1.0, max_failed_attempts=6)
    return_id = create_return(http, stack)
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "CANCELLED", view["outcome"]
    assert "pickup failed 3 times" in view["outcome"]["reason"]
    bookings = http.get(f"{stack.url('carrier')}/pickups", params={"return_id": return_id}).json()
    assert [p["status"] for p in bookings["pickups"]] == ["cancelled"]


def test_carrier_errors_are_retried(stack, http, faults):
    faults("carrier", error_rate=0.6, seed=5)
    return_id = _through_inspection(http, stack)
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED"
    bookings = http.get(f"{stack.url('carrier')}/pickups", params={"return_id": return_id}).json()
    assert len(bookings["pickups"]) == 1, "one booking however many retries"


def test_the_buyer_cancels_before_pickup(stack, http, faults):
    faults("carrier", attempt_failure_rate=1.0, max_failed_attempts=1)  # keeps it uncollected
    return_id = create_return(http, stack)
    wait_for_status(http, stack, return_id, {"PICKUP_SCHEDULED", "PICKUP_PENDING"}, timeout=30)
    response = http.post(
        f"{stack.url('returns')}/returns/{return_id}/cancel",
        json={"reason": "found a better size"},
        headers=as_buyer_of(http, stack, return_id),
    )
    assert response.status_code == 202
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=60)
    assert view["status"] in ("CANCELLED", "AWAITING_INSPECTION"), view
    if view["status"] == "CANCELLED":
        assert "found a better size" in view["outcome"]["reason"]


def test_a_cancellation_for_an_unknown_return_is_404(stack, http):
    agent = signed_in(http, stack, "AGENT-e2e", role="support")
    response = http.post(f"{stack.url('returns')}/returns/RMA-NOPE/cancel", json={}, headers=agent)
    assert response.status_code == 404


def test_an_item_that_does_not_match_is_quarantined_and_the_return_rejected(stack, http):
    return_id = _through_inspection(http, stack, matches_order=False)
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=60)
    assert view["status"] == "REJECTED"
    assert "does not match" in view["outcome"]["reason"]
    assert view["outcome"]["ticket_id"]
    assert _paid(http, stack, return_id) == []
    assert {m["disposition"] for m in view["intake"]["movements"]} == {"QUARANTINE"}


async def _write_poison(bootstrap: str, topic: str, value: bytes) -> str:
    poison_id = uuid.uuid4().hex
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value=value, key=b"RMA-POISON", headers=[("test.poison-id", poison_id.encode())]
        )
    finally:
        await producer.stop()
    return poison_id


async def _find_dead_letter(bootstrap: str, topic: str, poison_id: str) -> dict[str, str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(by_name(topic).partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(60):
            while True:
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    for message in messages:
                        headers = {k: v.decode() for k, v in message.headers}
                        if headers.get("test.poison-id") == poison_id:
                            return headers
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("value", "error_class"),
    [
        (b"\x00garbage", "NotAFrameError"),
        (b"\xc3\x01" + b"\x07" * 8 + b"\x00", "UnknownFingerprintError"),
    ],
    ids=["garbage", "unknown-fingerprint"],
)
def test_a_poison_record_is_dead_lettered_with_reasons_and_the_service_goes_on(
    stack, kafka_bootstrap, http, value, error_class
):
    poison_id = asyncio.run(_write_poison(kafka_bootstrap, REFUND_COMMANDS.name, value))
    headers = asyncio.run(
        _find_dead_letter(kafka_bootstrap, dead_letter_topic(REFUND_COMMANDS).name, poison_id)
    )
    assert headers["dlq.original.topic"] == REFUND_COMMANDS.name
    assert headers["dlq.error.class"] == error_class
    assert headers["dlq.service"] == "refund"
    assert headers["dlq.attempt"] == "1"
    for key in (
        "dlq.original.partition",
        "dlq.original.offset",
        "dlq.original.key",
        "dlq.error.message",
        "dlq.first.failed.at",
    ):
        assert headers[key], key
    return_id = _through_inspection(http, stack)  # the refund service still works
    assert wait_for_status(http, stack, return_id, TERMINAL, timeout=60)["status"] == "COMPLETED"


def test_a_refund_service_killed_mid_flow_pays_each_return_once(stack, http):
    return_ids = [_through_inspection(http, stack) for _ in range(3)]
    stack.restart("refund", hard=True)
    for return_id in return_ids:
        assert (
            wait_for_status(http, stack, return_id, TERMINAL, timeout=90)["status"] == "COMPLETED"
        )
        assert len(_paid(http, stack, return_id)) == 1


def _post_return(http, stack) -> tuple[int, dict, dict]:
    body = return_body()
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    answer = post_return(http, stack, body, headers=headers)
    return answer.status_code, answer.json(), dict(answer.headers)


def test_new_returns_are_refused_with_503_while_the_coordinator_is_down_and_taken_after(
    stack, http
):
    """Admission control: accepted returns waiting over the limit for a stopped
    coordinator make the front door refuse new ones (503, Retry-After, nothing recorded);
    once the coordinator has caught up they are taken again and the waiting one goes on."""
    front_door = stack.processes["returns"]
    usual_env = dict(front_door.env)
    front_door.env = {**usual_env, "BOOMERANG_ADMISSION_MAX_WAIT_S": "3"}
    stack.restart("returns", hard=False)
    try:
        stack.stop("coordinator")
        waiting = create_return(http, stack)  # nothing waits yet: taken
        deadline, refused = time.monotonic() + 30, None
        while time.monotonic() < deadline and refused is None:
            status, body, headers = _post_return(http, stack)
            refused = (body, headers) if status == 503 else None
            time.sleep(0.5)
        assert refused is not None, "no 503 within 30 s of the coordinator stopping"
        body, headers = refused
        assert body["error"] == "overloaded" and "coordinator" in body["detail"]
        assert 1 <= int(headers["retry-after"]) <= 60
        stack.start("coordinator")
        stack.wait_healthy(["coordinator"])
        deadline, status = time.monotonic() + 60, 503
        while time.monotonic() < deadline and status == 503:
            status, _, _ = _post_return(http, stack)
            time.sleep(0.5)
        assert status == 202
        started = {"PICKUP_PENDING", "PICKUP_SCHEDULED", "AWAITING_INSPECTION", *TERMINAL}
        wait_for_status(http, stack, waiting, started, timeout=60)
    finally:
        front_door.env = usual_env
        stack.start("coordinator")
        stack.restart("returns", hard=False)
