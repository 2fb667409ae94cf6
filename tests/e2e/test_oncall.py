"""The on-call `boomerang` commands on the running system (the real broker, the services as
OS processes, the partner doubles), run through the entry point with `--json`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from services.eventing.avro_codec import AvroCodec
from services.eventing.envelope import new_envelope
from services.eventing.event_publisher import producer_settings
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import PICKUP_COMMANDS, REFUND_EVENTS, dead_letter_topic
from services.tools.local_stack.stack import PAYMENT_PROVIDERS, LocalStack
from services.tools.oncall.audit_trail import read_trail
from services.tools.oncall.dead_letter_topics import read_dead_letters
from services.tools.oncall.topic_reader import read_topic
from tests.conftest import SESSION_STARTED_MS
from tests.e2e.scenario import (
    TERMINAL,
    create_return,
    post_scan_when_ready,
    scan,
    wait_for_status,
)
from tests.support.cli_process import run_cli

OPERATOR = "e2e-oncall@boomerang"
REASON = "e2e: consumer fix verified"
CODEC = AvroCodec(SchemaCatalogue.load())


def boomerang(stack: LocalStack, *args: str) -> subprocess.CompletedProcess:
    return run_cli(stack.bootstrap, *args, operator=OPERATOR)


def report(stack: LocalStack, *args: str, exit_code: int = 0) -> dict[str, Any]:
    done = boomerang(stack, *args, "--json")
    assert done.returncode == exit_code, done.stdout + done.stderr
    return json.loads(done.stdout)


def wait_caught_up(stack: LocalStack, services: tuple[str, ...], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        lag = report(stack, "lag")
        behind = {g["service"]: g["lag"] for g in lag["groups"] if g["service"] in services}
        if not any(behind.values()):
            return
        assert time.monotonic() < deadline, f"consumers still behind: {behind}"
        time.sleep(1)


def completed_return(http: httpx.Client, stack: LocalStack) -> str:
    return_id = create_return(http, stack)
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    return return_id


def refunds_at_psps(http: httpx.Client, stack: LocalStack) -> list[dict[str, Any]]:
    return [
        refund
        for provider in PAYMENT_PROVIDERS
        for refund in http.get(f"{stack.url(provider)}/refunds").json()["refunds"]
    ]


def ledger(http: httpx.Client, stack: LocalStack) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        answer = http.get(f"{stack.url('warehouse-intake')}/ledger")
        if answer.status_code == 200 or time.monotonic() > deadline:
            assert answer.status_code == 200, answer.text
            return answer.json()
        time.sleep(0.5)  # 503 while its table recovers


def audit_of(stack: LocalStack, operation_id: str) -> dict[str, Any]:
    [found] = [
        e for e in asyncio.run(read_trail(stack.bootstrap)) if e["operation_id"] == operation_id
    ]
    return found


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------- replay


def this_sessions_records(stack: LocalStack, topic: str) -> tuple[str, ...]:
    """The whole topic. On a reused development broker the topic may also hold records an
    older build wrote whose effects today's services never recorded (a replay would rightly
    apply them): then the records since this test session started."""
    everything = report(stack, "replay", "--topic", topic)
    if min((r["timestamp_ms"] for r in everything["selected"]), default=SESSION_STARTED_MS) >= (
        SESSION_STARTED_MS
    ):
        return ("--topic", topic)
    return ("--topic", topic, "--from-time", iso(SESSION_STARTED_MS))


def test_a_full_topic_replay_makes_no_new_refund_or_stock_movement_as_its_dry_run_said(stack, http):
    completed_return(http, stack)
    wait_caught_up(stack, ("refund", "warehouse-intake", "coordinator"))
    refunds_before, ledger_before = refunds_at_psps(http, stack), ledger(http, stack)
    replayed_returns: set[str] = set()
    for topic in (
        "boomerang.refund.commands",
        "boomerang.intake.commands",
        "boomerang.intake.stock-movements",
    ):
        selection = this_sessions_records(stack, topic)
        dry = report(stack, "replay", *selection)
        assert dry["dry_run"] is True and dry["records"] > 0
        assert dry["new_effects"] == 0, dry["new_effect_records"]
        done = report(stack, "replay", *selection, "--execute", "--reason", REASON)
        assert done["result"]["published"] == dry["records"]
        assert done["outcome"] == "completed"
        audit = audit_of(stack, done["operation_id"])
        assert (audit["actor"], audit["reason"]) == (OPERATOR, REASON)
        assert audit["dry_run_prediction"]["new_effects"] == 0
        replayed_returns |= {r["return_id"] for r in dry["selected"] if r["return_id"]}
    wait_caught_up(stack, ("refund", "warehouse-intake"))
    time.sleep(2)  # an effect, had there been one, would reach the partner now
    before = [r for r in refunds_before if r["return_id"] in replayed_returns]
    after = [r for r in refunds_at_psps(http, stack) if r["return_id"] in replayed_returns]
    assert len(after) == len(before) > 0
    ledger_after = ledger(http, stack)
    assert ledger_after["movements_applied"] == ledger_before["movements_applied"]
    assert ledger_after["duplicates_ignored"] > ledger_before["duplicates_ignored"]


def test_a_rewind_needs_the_group_stopped_and_re_reads_without_booking_twice(stack, http):
    topic = "boomerang.intake.stock-movements"
    refused = report(stack, "replay", "--topic", topic, "--group", "warehouse-intake", exit_code=1)
    assert "stop warehouse-intake first" in refused["refused"]
    before = ledger(http, stack)
    stack.stop("warehouse-intake")
    try:
        deadline = time.monotonic() + 60
        while True:  # a stopped member leaves the group when its session times out
            done = boomerang(
                stack, "replay", "--topic", topic, "--group", "warehouse-intake", "--json"
            )
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        dry = json.loads(done.stdout)
        assert done.returncode == 0, dry
        if dry["new_effects"]:  # a reused broker's records from older builds: see above
            since = ("--from-time", iso(SESSION_STARTED_MS))
            dry = report(stack, "replay", "--topic", topic, "--group", "warehouse-intake", *since)
        else:
            since = ()
        assert dry["mode"] == "rewind" and dry["new_effects"] == 0
        assert sum(row["redelivered"] for row in dry["offsets"]) == dry["records"] > 0
        # never behind where the group is (-1: it never committed there: it reads from the start)
        assert all(
            row["current"] == -1 or row["target"] <= row["current"] for row in dry["offsets"]
        )
        rewound = report(
            stack,
            "replay",
            "--topic",
            topic,
            "--group",
            "warehouse-intake",
            *since,
            "--execute",
            "--reason",
            REASON,
        )
        assert rewound["result"]["rewound"] == dry["offsets"]
    finally:
        stack.start("warehouse-intake")
        stack.wait_healthy(["warehouse-intake"])
    wait_caught_up(stack, ("warehouse-intake",))
    after = ledger(http, stack)
    assert after["movements_applied"] == before["movements_applied"]
    # every re-read record was one the ledger had taken: the engine knew it from the state's
    # stamps (the ledger's own movement ids would have refused it next)
    health = http.get(f"{stack.url('warehouse-intake')}/health").json()
    assert (
        health["skipped_as_applied"] + after["duplicates_ignored"] - before["duplicates_ignored"]
        >= dry["records"]
    )


def test_a_replay_by_return_id_touches_only_that_returns_records(stack, http):
    return_id = completed_return(http, stack)
    wait_caught_up(stack, ("coordinator",))
    args = ("replay", "--topic", REFUND_EVENTS.name, "--return-id", return_id)
    dry = report(stack, *args)
    assert dry["records"] >= 1 and dry["new_effects"] == 0
    assert {r["return_id"] for r in dry["selected"]} == {return_id}
    done = report(stack, *args, "--execute", "--reason", REASON)
    copies = [
        m
        for m in asyncio.run(
            read_topic(stack.bootstrap, REFUND_EVENTS.name, REFUND_EVENTS.partitions)
        )
        if ("replay.operation.id", done["operation_id"].encode())
        in [(k, bytes(v)) for k, v in m.headers]
    ]
    assert len(copies) == dry["records"]
    assert {m.key for m in copies} == {return_id.encode()}
    sources = {dict((k, bytes(v)) for k, v in m.headers)["replay.source"] for m in copies}
    assert sources == {
        f"{REFUND_EVENTS.name}/{r['partition']}/{r['offset']}".encode() for r in dry["selected"]
    }
    wait_caught_up(stack, ("coordinator",))
    view = wait_for_status(http, stack, return_id, TERMINAL)
    assert view["status"] == "COMPLETED"


async def _tickets_at(bootstrap: str, return_id: str, times_ms: list[int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        for index, at in enumerate(times_ms):
            record = {
                "envelope": new_envelope("TicketOpened", return_id, "test", occurred_at=at),
                "ticket_id": f"T-{index}",
                "category": "time-range-test",
                "summary": f"ticket {index}",
                "facts": {},
            }
            await producer.send_and_wait(
                "boomerang.support.tickets",
                CODEC.encode("TicketOpened", record),
                key=return_id.encode(),
                timestamp_ms=at,
            )
    finally:
        await producer.stop()


def test_a_time_range_selects_exactly_the_records_in_it_from_included_to_excluded(stack):
    return_id = f"RMA-TIME-{uuid.uuid4().hex[:8].upper()}"
    t0 = (int(time.time() * 1000) // 1000 - 600) * 1000  # ten minutes ago, on the second
    times = [t0, t0 + 1000, t0 + 2000, t0 + 3000]
    asyncio.run(_tickets_at(stack.bootstrap, return_id, times))
    base = ("replay", "--topic", "boomerang.support.tickets", "--return-id", return_id)
    window = report(stack, *base, "--from-time", iso(t0 + 1000), "--to-time", iso(t0 + 3000))
    assert [r["timestamp_ms"] for r in window["selected"]] == [t0 + 1000, t0 + 2000]
    just_before = report(stack, *base, "--to-time", iso(t0 + 1000))
    assert [r["timestamp_ms"] for r in just_before["selected"]] == [t0]
    one_ms = report(stack, *base, "--from-time", iso(t0 + 2999), "--to-time", iso(t0 + 3001))
    assert [r["timestamp_ms"] for r in one_ms["selected"]] == [t0 + 3000]


# ---------------------------------------------------------------- dead letters


def _letters_of(stack: LocalStack, topic: str, return_id: str) -> list[Any]:
    letters = asyncio.run(read_dead_letters(stack.bootstrap, topic))
    return [m for m in letters if m.key == return_id.encode()]


def test_a_dead_letter_redriven_after_the_config_fix_is_processed_once(stack, http):
    pickup = stack.processes["pickup"]
    right = pickup.env["CARRIER_URL"]
    pickup.env["CARRIER_URL"] = f"{right}/no-such-api"  # the carrier answers 404: refused
    stack.restart("pickup", hard=False)
    try:
        return_id = create_return(http, stack)
        deadline = time.monotonic() + 60
        while not (letters := _letters_of(stack, PICKUP_COMMANDS.name, return_id)):
            assert time.monotonic() < deadline, "the refused booking never reached the DLQ"
            time.sleep(1)
        assert letters[0].reason == "carrier-refused"
    finally:
        pickup.env["CARRIER_URL"] = right
        stack.restart("pickup", hard=False)
    dry = report(stack, "dlq", "redrive", "--return-id", return_id)
    assert dry["letters"] >= 1 and dry["dry_run"] is True
    assert dry["effects"][PICKUP_COMMANDS.name]["pickup/pickup-commands"]["new"] >= 1
    done = report(
        stack, "dlq", "redrive", "--return-id", return_id, "--execute", "--reason", REASON
    )
    assert done["result"]["redriven"] == dry["positions"]
    view = wait_for_status(http, stack, return_id, {"AWAITING_INSPECTION", *TERMINAL}, timeout=90)
    assert view["status"] == "AWAITING_INSPECTION", view
    bookings = http.get(f"{stack.url('carrier')}/pickups", params={"return_id": return_id}).json()
    assert len(bookings["pickups"]) == 1  # the redriven tries and the saga's own: one booking
    again = report(stack, "dlq", "redrive", "--return-id", return_id)
    assert again["letters"] == 0
    assert sorted(again["skipped_already_redriven"]) == sorted(dry["positions"])
    assert len(_letters_of(stack, PICKUP_COMMANDS.name, return_id)) == len(dry["positions"])


async def _poison(bootstrap: str, topic: str, key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"\x00\x01not avro", key=key)
    finally:
        await producer.stop()


def test_a_record_still_bad_when_redriven_returns_to_the_dlq_with_attempt_2(stack):
    key = f"RMA-POISON-{uuid.uuid4().hex[:8].upper()}"
    dlq = dead_letter_topic(PICKUP_COMMANDS).name
    asyncio.run(_poison(stack.bootstrap, PICKUP_COMMANDS.name, key.encode()))
    deadline = time.monotonic() + 60
    while not (first := _letters_of(stack, PICKUP_COMMANDS.name, key)):
        assert time.monotonic() < deadline, "the poison record never reached the DLQ"
        time.sleep(1)
    [letter] = first
    assert letter.attempt == 1
    position = f"{dlq}/{letter.partition}/{letter.offset}"
    dry = report(stack, "dlq", "redrive", "--letter", position)
    assert dry["effects"][PICKUP_COMMANDS.name]["pickup/pickup-commands"]["dead_letter"] == 1
    report(stack, "dlq", "redrive", "--letter", position, "--execute", "--reason", REASON)
    deadline = time.monotonic() + 60
    while len(letters := _letters_of(stack, PICKUP_COMMANDS.name, key)) < 2:
        assert time.monotonic() < deadline, "the redriven poison never came back"
        time.sleep(1)
    assert sorted(m.attempt for m in letters) == [1, 2]
    second = max(letters, key=lambda m: m.attempt)
    assert second.header("dlq.original.offset") == letter.header("dlq.original.offset")
    assert second.header("redrive.source") == position
    time.sleep(3)
    assert len(_letters_of(stack, PICKUP_COMMANDS.name, key)) == 2  # no loop


# ---------------------------------------------------------------- sagas


def test_saga_cancel_of_a_return_awaiting_inspection_asks_the_carrier_and_ends_cancelled(
    stack, http
):
    return_id = create_return(http, stack)
    wait_for_status(http, stack, return_id, {"AWAITING_INSPECTION"}, timeout=60)
    dry = report(stack, "saga", "cancel", return_id)
    assert dry["predicted"]["to"] == "COMPENSATING"
    assert dry["predicted"]["commands"] == ["PickupCancelRequested"]
    done = report(stack, "saga", "cancel", return_id, "--execute", "--reason", "buyer called")
    assert done["result"]["applied"]["to"] == "COMPENSATING"
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=60)
    assert view["status"] == "CANCELLED", view["outcome"]
    assert view["compensation"]["done"] == ["cancel-pickup"]
    assert "buyer called" in view["outcome"]["reason"]
    [booking] = http.get(f"{stack.url('carrier')}/pickups", params={"return_id": return_id}).json()[
        "pickups"
    ]
    assert booking["cancel_requests"] == 1
    shown = report(stack, "saga", "show", return_id)
    assert shown["status"] == "CANCELLED"
    assert any(h["event_type"] == "SagaCancelRequested" for h in shown["history"])
    audit = audit_of(stack, done["operation_id"])
    assert audit["operation"] == "saga.cancel" and audit["reason"] == "buyer called"


def test_saga_retry_of_a_return_stuck_at_the_refund_step_pays_exactly_once(stack, http):
    """The refund service (its order ledger and its payments) is down: the return waits for
    its share of the order; the operator's retry re-asks under the same key, and once the
    service is back the buyer is paid once."""
    stack.stop("refund")
    try:
        return_id = create_return(http, stack)
        body, headers = scan(return_id)
        assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
        wait_for_status(http, stack, return_id, {"RESERVING_REFUND"}, timeout=60)
        time.sleep(2)
        stuck = report(stack, "saga", "list", "--state", "RESERVING_REFUND", "--stuck-for", "1s")
        assert return_id in [s["return_id"] for s in stuck["sagas"]]
        retried = report(
            stack, "saga", "retry", return_id, "--execute", "--reason", "refund service back"
        )
        assert retried["result"]["applied"]["commands"] == ["RefundReservationRequested"]
    finally:
        stack.start("refund")
        stack.wait_healthy(["refund"])
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    paid = [
        r
        for r in refunds_at_psps(http, stack)
        if r["return_id"] == return_id and r["status"] in ("succeeded", "pending")
    ]
    assert len(paid) == 1
