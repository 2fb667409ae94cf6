"""The notification provider's double as a real OS process, and the notifier's provider
adapter talking to it over HTTP: a batch answers each message on its own, the same key
alone or in a batch is one message, a fault fails the whole batch retryably. No mocks."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from services.decisions.notifications.message_texts import Message
from services.decisions.notifications.milestones import Notice
from services.eventing.partner_http import PartnerHttp
from services.notifications.handlers import Send
from services.notifications.provider import BATCH_MAX, Delivered, NotifyProvider, Undelivered
from tests.integration.test_partner_doubles import own_partner, set_faults


def message_entry(key: str, return_id: str, **overrides: str) -> dict[str, str]:
    return {
        "idempotency_key": key,
        "return_id": return_id,
        "recipient_role": "buyer",
        "recipient_id": "B-1",
        "milestone": "accepted",
        "language": "en",
        "subject": "Your return is accepted",
        "body": "We will pick it up.",
        **overrides,
    }


def a_send(return_id: str, milestone: str, recipient_id: str = "B-1") -> Send:
    notice = Notice(f"{uuid.uuid4()}:buyer", milestone, "buyer", {}, 0)
    return Send(return_id, notice, 1, recipient_id, Message("en", milestone, f"{milestone}."))


@pytest.fixture
def notify(tmp_path: Path):
    with own_partner("notify_server", "NOTIFY_", {}, tmp_path) as (process, client):
        yield process, client


def test_a_batch_answers_each_message_and_a_key_is_one_message_alone_or_batched(notify) -> None:
    _, client = notify
    return_id = f"R-{uuid.uuid4().hex[:8]}"
    alone = message_entry("k-alone", return_id)
    single = {name: value for name, value in alone.items() if name != "idempotency_key"}
    assert (
        client.post("/messages", json=single, headers={"Idempotency-Key": "k-alone"})
    ).status_code == 201
    batch = [
        alone,  # sent before alone: the same message
        message_entry("k-new", return_id, milestone="pickup_booked"),
        message_entry("k-alone-2", return_id, recipient_role="courier"),  # refused: 422
    ]
    answer = client.post("/messages/batch", json={"messages": batch})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [200, 201, 422]
    assert results[2]["error"] == "invalid_field"
    reused = message_entry("k-new", return_id, body="other words")
    again = client.post("/messages/batch", json={"messages": [reused]}).json()["results"]
    assert again[0]["status"] == 409
    listed = client.get("/messages", params={"return_id": return_id}).json()["messages"]
    assert sorted(m["idempotency_key"] for m in listed) == ["k-alone", "k-new"]
    stats = client.get("/messages/stats").json()
    assert stats["duplicates"] == 0 and stats["replays"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"messages": "x"},
        {"messages": [1]},
        {"messages": [message_entry("k", "R-1"), message_entry("k", "R-1")]},
        {"messages": [message_entry(f"k{i}", "R-1") for i in range(BATCH_MAX + 1)]},
        {},
    ],
)
def test_a_batch_the_provider_cannot_read_is_a_422_and_sends_nothing(notify, body) -> None:
    _, client = notify
    answer = client.post("/messages/batch", json=body)
    assert answer.status_code == 422, answer.text
    assert client.get("/messages/stats").json()["delivered"] == 0


def test_the_adapter_sends_a_batch_and_reads_each_outcome_over_http(notify) -> None:
    process, client = notify
    return_id = f"R-{uuid.uuid4().hex[:8]}"
    accepted = a_send(return_id, "accepted")
    sends = [accepted, a_send(return_id, "pickup_booked", recipient_id=""), accepted]

    async def run() -> tuple[list, list, list]:
        async with PartnerHttp(process.base_url, 5.0, partner="notify") as http:
            provider = NotifyProvider(http)
            first = await provider.send_batch(sends)
            again = await provider.send_batch(sends)
            set_faults(client, error_rate=1)
            down = await provider.send_batch(sends)
            return first, again, down

    first, again, down = asyncio.run(run())
    assert isinstance(first[0], Delivered)
    assert isinstance(first[1], Undelivered) and not first[1].retryable  # no recipient: 422
    assert first[2] == first[0]  # one key twice in a pass: sent once, both told
    assert again[0] == first[0]  # the same message, replayed
    assert all(isinstance(o, Undelivered) and o.retryable for o in down)
    assert len(client.get("/messages", params={"return_id": return_id}).json()["messages"]) == 1


def test_a_batchs_messages_outlive_a_restart_of_the_double(tmp_path: Path) -> None:
    ledger = {"NOTIFY_LEDGER_FILE": str(tmp_path / "notify-ledger.jsonl")}
    return_id = f"R-{uuid.uuid4().hex[:8]}"
    batch = [message_entry(f"k-{n}", return_id, milestone=f"m{n}") for n in range(3)]
    with own_partner("notify_server", "NOTIFY_", ledger, tmp_path / "first") as (_, client):
        assert client.post("/messages/batch", json={"messages": batch}).status_code == 200
    with own_partner("notify_server", "NOTIFY_", ledger, tmp_path / "second") as (_, client):
        again = client.post("/messages/batch", json={"messages": batch}).json()["results"]
        assert [r["status"] for r in again] == [200, 200, 200]  # replays, not new messages
        assert client.get("/messages/stats").json()["delivered"] == 3
