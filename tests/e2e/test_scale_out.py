"""Two instances of a service in one consumer group, on the session's stack: a request lands
on either and is answered by the instance owning the return's partition; while partitions
move the answer is 503 + Retry-After, never a wrong one. And state that stays bounded: a
finished saga past its retention leaves the coordinator's table and is still shown."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from services.engine.partition_owners import partition_for
from services.eventing.topics import RETURNS_EVENTS
from services.tools.local_stack.stack import LocalStack
from tests.e2e.scenario import (
    TERMINAL,
    create_return,
    post_scan_when_ready,
    scan,
    wait_for_status,
)
from tests.support.cli_process import run_cli

PARTITIONS = RETURNS_EVENTS.partitions


def owned_partitions(http: httpx.Client, url: str) -> set[int] | None:
    health = http.get(f"{url}/health").json()
    return set(health["partitions"]) if health["ready"] and health["partitions"] else None


def wait_until_split(http: httpx.Client, stack: LocalStack, service: str) -> dict[str, set[int]]:
    """Each instance of `service` ready, together owning every partition once."""
    deadline = time.monotonic() + 120
    while True:
        owned = {
            name: owned_partitions(http, stack.url(name)) for name in stack.instances_of(service)
        }
        parts = [p for numbers in owned.values() if numbers for p in numbers]
        if all(owned.values()) and sorted(parts) == list(range(PARTITIONS)):
            return owned  # type: ignore[return-value]
        assert time.monotonic() < deadline, f"{service} never split its partitions: {owned}"
        time.sleep(0.3)


@pytest.fixture
def second_instance(stack: LocalStack, http: httpx.Client) -> Iterator:
    """Start a second instance of a service; stop it (partitions go back) after the test."""
    started: list[str] = []

    def start(service: str) -> str:
        name = stack.add_instance(service) if service not in started else started[-1]
        stack.start(name)
        stack.wait_healthy([name], timeout=120)
        started.append(name)
        return name

    yield start
    for name in started:
        stack.stop(name)
        stack.forget(name)
    for name in {n.partition("#")[0] for n in started}:
        stack.wait_healthy([name], timeout=120)


def test_a_scan_landing_on_the_instance_that_does_not_own_the_return_is_answered(
    stack, http, second_instance
):
    second = second_instance("inspection")
    owned = wait_until_split(http, stack, "inspection")
    instances = ["inspection", second]
    answered_elsewhere = 0
    for _ in range(4):
        return_id = create_return(http, stack)
        partition = partition_for(return_id, PARTITIONS)
        elsewhere = next(name for name in instances if partition not in owned[name])
        wait_for_status(http, stack, return_id, {"AWAITING_INSPECTION"}, timeout=60)
        body, headers = scan(return_id)
        deadline = time.monotonic() + 30
        while True:  # the owner's view may learn of the pickup just after the coordinator
            answer = http.post(f"{stack.url(elsewhere)}/inspections", json=body, headers=headers)
            if answer.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == 202, answer.text
        assert answer.json()["return_id"] == return_id
        answered_elsewhere += 1
        view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
        assert view["status"] == "COMPLETED", view
    assert answered_elsewhere == 4


def test_while_partitions_move_the_answer_is_503_with_retry_after_then_the_right_one(
    stack, http, second_instance
):
    # instance 1 keeps the lower half of the partitions (range assignor, members in client id
    # order): a return of the upper half moves to the new instance and back
    return_id = create_return(http, stack)
    while partition_for(return_id, PARTITIONS) < PARTITIONS // 2:
        return_id = create_return(http, stack)
    wait_for_status(http, stack, return_id, TERMINAL | {"AWAITING_INSPECTION"}, timeout=60)
    seen: list[tuple[int, str | None, str | None]] = []
    stop = threading.Event()

    def ask_again_and_again() -> None:
        with httpx.Client(timeout=10.0) as asking:
            while not stop.is_set():
                try:
                    answer = asking.get(f"{stack.url('coordinator')}/returns/{return_id}")
                except httpx.HTTPError:
                    continue
                body = answer.json()
                seen.append(
                    (answer.status_code, answer.headers.get("Retry-After"), body.get("return_id"))
                )

    asking = threading.Thread(target=ask_again_and_again, daemon=True)
    asking.start()
    try:
        second_instance("coordinator")
        wait_until_split(http, stack, "coordinator")
        time.sleep(1.0)
    finally:
        stop.set()
        asking.join(timeout=20)
    statuses = {status for status, _, _ in seen}
    assert statuses <= {200, 503}, statuses
    assert all(retry == "1" for status, retry, _ in seen if status == 503)
    assert all(answered == return_id for status, _, answered in seen if status == 200)
    assert 503 in statuses, "no answer came while the partitions moved"
    last_refusal = max(i for i, (status, _, _) in enumerate(seen) if status == 503)
    assert any(status == 200 for status, _, _ in seen[last_refusal:]), "never answered again"


def test_a_saga_past_its_retention_is_archived_and_still_shown(stack, http):
    return_id = create_return(http, stack)
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    finished = wait_for_status(http, stack, return_id, {"COMPLETED"}, timeout=90)
    assert "archived" not in finished
    retention_s = int(stack.processes["coordinator"].env["SAGA_FINISHED_RETENTION_MS"]) / 1000
    deadline = time.monotonic() + retention_s + 60
    while True:  # archived once its retention passed (the archive timer runs every 5 s)
        view = http.get(f"{stack.url('coordinator')}/returns/{return_id}").json()
        if view.get("archived") or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert view.get("archived") is True, view
    assert view["status"] == "COMPLETED" and view["history"] == finished["history"]
    assert view["refund"] == finished["refund"]
    listing = http.get(f"{stack.url('coordinator')}/returns", params={"status": "COMPLETED"})
    assert return_id in listing.json()["return_ids"]
    shown = run_cli(stack.bootstrap, "saga", "show", return_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["archived"] is True
    # the saga's working state leaves the coordinator's changelog (a tombstone, written at
    # the table's next checkpoint)
    deadline = time.monotonic() + 30
    while True:
        listed = run_cli(stack.bootstrap, "saga", "list", "--limit", "1000000", "--json")
        assert listed.returncode == 0, listed.stderr
        if return_id not in listed.stdout or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    assert return_id not in listed.stdout
