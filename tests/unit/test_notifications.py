"""Notifications (pure core and handlers, no broker): which events are milestones for whom,
each notice once however events are delivered, retries and giving up, texts per language."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.notifications import outbox
from services.decisions.notifications.message_texts import MessageTexts, check_texts
from services.decisions.notifications.milestones import notices_of
from services.eventing.handler_contract import Incoming
from services.notifications import handlers
from services.notifications.handlers import NotifyPorts
from services.notifications.texts_files import load_texts

NOW = 1_790_000_000_000
RETURN = "RMA-N-1"


def envelope(name: str, n: int) -> dict:
    return {"event_id": f"{name}-{n}", "return_id": RETURN, "occurred_at": NOW + n}


def events(market: str = "DE") -> list[tuple[str, dict]]:
    requested = {"buyer_id": "B-1", "seller_id": "S-1", "market": market, "order_ref": "O-1"}
    return [
        ("ReturnAccepted", {"envelope": envelope("accepted", 1), "requested": requested}),
        (
            "PickupScheduled",
            {
                "envelope": envelope("scheduled", 2),
                "carrier": "DHL",
                "booking_id": "BK-1",
                "tracking_number": "T-1",
                "window_start": NOW + 86_400_000,
                "window_end": NOW + 90_000_000,
            },
        ),
        (
            "PickupAttemptFailed",
            {"envelope": envelope("failed", 3), "attempt_no": 1, "failure_reason": "NOBODY_HOME"},
        ),
        (
            "InspectionRecorded",
            {"envelope": envelope("inspected", 4), "items": [{"grade": "A"}, {"grade": "B"}]},
        ),
        (
            "BuyerDetailsProvided",
            {
                "envelope": envelope("account", 5),
                "refund_account": {"number": "DE89370400440532013000"},
            },
        ),
        (
            "RefundIssued",
            {
                "envelope": envelope("refund", 6),
                "amount": {"amount_minor": 1234, "currency": "EUR"},
                "method": "CARD",
            },
        ),
        ("RefundSettled", {"envelope": envelope("settled", 7)}),  # nobody is told
        (
            "ReturnCompleted",
            {
                "envelope": envelope("completed", 8),
                "refunded": {"amount_minor": 1234, "currency": "EUR"},
            },
        ),
    ]


EXPECTED = {
    ("accepted", "buyer"),
    ("accepted", "seller"),
    ("pickup_booked", "buyer"),
    ("pickup_failed", "buyer"),
    ("inspected", "buyer"),
    ("inspected", "seller"),
    ("bank_account_changed", "buyer"),
    ("refunded", "buyer"),
    ("closed", "buyer"),
    ("closed", "seller"),
}


def folded(delivered: list[tuple[str, dict]]) -> dict:
    state = None
    for name, record in delivered:
        state = outbox.take_event(state, name, record, NOW)
    return state


def test_each_milestone_is_one_notice_per_recipient():
    state = folded(events())
    assert {(e["milestone"], e["recipient"]) for e in state["outbox"]} == EXPECTED
    assert state["to"] == {"buyer": "B-1", "seller": "S-1", "market": "DE"}
    assert state["ended_at"] == NOW + 8
    assert [n.key for n in notices_of(*events()[0])] == ["accepted-1:buyer", "accepted-1:seller"]


@settings(max_examples=200, deadline=None)
@given(order=st.lists(st.integers(0, 7), min_size=1, max_size=30))
def test_any_order_and_any_redelivery_queues_each_notice_once(order):
    """Events arrive in any order, any of them again: the outbox holds each notice of the
    events seen once; none is sent before the recipients are known."""
    every = events()
    state = folded([every[i] for i in order])
    keys = [entry["key"] for entry in state["outbox"]]
    assert len(keys) == len(set(keys))
    expected = {n.key for i in set(order) for n in notices_of(*every[i])}
    assert set(keys) == expected
    assert bool(outbox.ready(state, NOW)) == (0 in order and bool(keys))


@given(copies=st.integers(2, 5), sent_first=st.booleans())
def test_another_event_saying_the_same_thing_is_not_told_twice(copies, sent_first):
    """A pickup command retried after its timeout and redriven from the dead letters too:
    two PickupScheduled for one booking (different ids, the same words) are one message; a
    new window is news."""
    name, record = events()[1]
    state = folded(events()[:1])
    for n in range(copies):
        again = {**record, "envelope": envelope("scheduled-again", n)}
        state = outbox.take_event(state, name, again, NOW)
        if sent_first and n == 0:
            state = outbox.mark_sent(state, state["outbox"][-1]["key"], NOW)
    told = [e for e in state["outbox"] if e["milestone"] == "pickup_booked"]
    assert len(told) + (1 if sent_first else 0) == 1
    moved = {**record, "envelope": envelope("rescheduled", 9), "window_start": NOW + 172_800_000}
    state = outbox.take_event(state, name, moved, NOW)
    told = [e for e in state["outbox"] if e["milestone"] == "pickup_booked"]
    assert len(told) + (1 if sent_first else 0) == 2
    assert outbox.take_event(state, name, moved, NOW) == state  # redelivered: no change


def test_a_sent_notice_is_never_queued_again_and_failures_back_off_then_give_up():
    state = folded(events()[:2])
    key = state["outbox"][0]["key"]
    state = outbox.mark_sent(state, key, NOW)
    again = outbox.take_event(state, *events()[0], NOW)
    assert key not in {e["key"] for e in again["outbox"]} and key in again["sent"]
    terms = outbox.RetryTerms(first_delay_ms=1000, factor=2.0, max_delay_ms=3000, max_attempts=4)
    other = again["outbox"][0]["key"]
    delays = []
    for _ in range(3):
        again, gave_up = outbox.mark_failed(again, other, NOW, terms)
        assert not gave_up
        [entry] = [e for e in again["outbox"] if e["key"] == other]
        delays.append(entry["next_try_at"] - NOW)
    assert delays == [1000, 2000, 3000]
    again, gave_up = outbox.mark_failed(again, other, NOW, terms)
    assert gave_up and again["given_up"] == 1
    assert other not in {e["key"] for e in again["outbox"]}


def test_the_sent_keys_kept_are_bounded():
    state = outbox.empty()
    for n in range(outbox.MAX_SENT + 10):
        state = outbox.mark_sent(state, f"k{n}", n)
    assert len(state["sent"]) == outbox.MAX_SENT and "k0" not in state["sent"]


def test_a_dispute_opens_an_ended_return_again():
    state = folded(events())
    disputed = {"envelope": envelope("disputed", 9), "dispute_id": "D-1"}
    state = outbox.take_event(state, "DisputeOpened", disputed, NOW)
    assert state["ended_at"] is None
    assert {("disputed", "buyer"), ("disputed", "seller")} <= {
        (e["milestone"], e["recipient"]) for e in state["outbox"]
    }


def test_the_deployed_texts_are_complete_and_read_in_the_markets_language():
    texts = load_texts({})
    assert check_texts(texts.texts) == []
    [refunded] = [n for n in notices_of(*events()[5]) if n.recipient == "buyer"]
    german = texts.render(refunded, "DE", RETURN)
    assert german.language == "de" and "12,34 EUR" in german.body and RETURN in german.body
    english = texts.render(refunded, "KW", RETURN)  # ar has no notification texts: en
    assert english.language == "en" and "12.34 EUR" in english.body
    assert "$" not in german.subject + german.body + english.subject + english.body


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ({"subject": "Hi $buyer_name", "body": "x"}, "no such fact"),
        ({"subject": "5 $", "body": "x"}, "not a placeholder"),
        ({"subject": "x"}, "exactly"),
    ],
)
def test_a_text_naming_a_fact_it_has_not_is_refused(text, problem):
    texts = json.loads(Path("deploy/notifications/en.json").read_text())
    texts = {"en": {"buyer": {**texts["buyer"], "refunded": text}, "seller": texts["seller"]}}
    problems = check_texts(texts)
    assert len(problems) == 1 and problem in problems[0], problems


def ports() -> NotifyPorts:
    clock = [NOW]
    made = NotifyPorts({}, load_texts({}), lambda: clock[0])
    made.clock = clock  # type: ignore[attr-defined]
    return made


def deliver(wired: NotifyPorts, name: str, record: dict) -> None:
    incoming = Incoming(name, record, RETURN.encode())
    asyncio.run(handlers.take(wired, incoming))


def test_the_handlers_send_each_due_notice_once_and_settle_it_from_its_event():
    wired = ports()
    for name, record in events():
        deliver(wired, name, record)
        deliver(wired, name, record)  # every event twice
    sends = handlers.due_sends(wired)
    assert {(s.notice.milestone, s.notice.recipient) for s in sends} == EXPECTED
    assert {s.recipient_id for s in sends} == {"B-1", "S-1"}
    assert handlers.due_sends(wired) == []  # in flight: not sent again
    last = sends[-1]
    results = [
        (s.return_id, handlers.sent_result(s, f"MSG-{s.notice.key}")) for s in sends[:-1]
    ] + [(last.return_id, handlers.failed_result(last, "HTTP 503", True))]
    [(name, settled)] = handlers.settled_events(results, NOW + 10)  # one record per return
    assert name == "NotificationsSettled" and len(settled["results"]) == len(EXPECTED)
    deliver(wired, name, settled)
    deliver(wired, name, settled)  # redelivered: nothing changes twice
    state = wired.outboxes[RETURN]
    assert len(state["sent"]) == len(EXPECTED) - 1
    [waiting] = state["outbox"]
    assert waiting["attempts"] == 1 and waiting["next_try_at"] == NOW + 5_000
    wired.clock[0] = NOW + 61_000  # past the retry and the in-flight guard
    [retried] = handlers.due_sends(wired)
    assert (retried.notice.key, retried.attempt) == (last.notice.key, 2)
    result = (retried.return_id, handlers.sent_result(retried, "MSG-2"))
    [(name, sent)] = handlers.settled_events([result], NOW + 61_000)
    wired.clock[0] = NOW + 8 * 86_400_000  # long after the return ended
    deliver(wired, name, sent)
    assert RETURN not in wired.outboxes  # nothing left to send, kept long enough: dropped


def test_a_notice_waits_until_the_returns_recipients_are_known():
    wired = ports()
    deliver(wired, *events()[1])  # a pickup before the acceptance was read
    assert handlers.due_sends(wired) == []
    deliver(wired, *events()[0])
    assert {s.notice.milestone for s in handlers.due_sends(wired)} == {"accepted", "pickup_booked"}


def test_message_texts_fall_back_to_english_for_a_milestone_a_language_lacks():
    texts = load_texts({})
    partial = MessageTexts(
        {"en": texts.texts["en"], "de": {"buyer": {}, "seller": {}}},
        {"DE": "de"},
        {"en": ".", "de": ","},
    )
    [notice] = [n for n in notices_of(*events()[0]) if n.recipient == "buyer"]
    assert partial.render(notice, "DE", RETURN).language == "en"
