"""The notifier's handlers.

Every milestone event (returns, pickup, inspection, risk, refund, saga, disputes) adds its
notices to the return's outbox (decisions/notifications/outbox.py) in the `outboxes`
table, each once however often the event is delivered. A timer (`due_sends`) takes the
notices whose time has come; the composition root sends them through the provider and
publishes what happened, which comes back here
and settle the outbox (one NotificationsSettled per return and pass, with every send's
result): a send is a durable step like the saga's timers, and a failed one
is tried again later without holding anything else back. The provider's Idempotency-Key
is the notice key, so a send repeated after a crash is one message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from services.decisions.event_ids import deterministic_event_id
from services.decisions.notifications import outbox
from services.decisions.notifications.message_texts import Message, MessageTexts
from services.decisions.notifications.milestones import CONTEXT_EVENTS, Notice
from services.engine.due_timers import DueTimers
from services.eventing.envelope import new_envelope
from services.eventing.handler_contract import HttpAnswer, HttpRequest, Incoming, Outbound
from services.eventing.log_setup import get_logger
from services.eventing.request_fields import ApiError

SERVICE = "notifications"
# one record per return and sending pass; one per message before (still read)
RESULT_EVENTS = ("NotificationsSettled", "NotificationSent", "NotificationFailed")
# every event that adds a notice, names the recipients, ends a return or settles a send
TAKEN = frozenset(
    {
        *CONTEXT_EVENTS,
        *RESULT_EVENTS,
        *outbox.ENDING_EVENTS,
        "ReturnCancelled",
        "PickupScheduled",
        "PickupRescheduled",
        "DropOffBooked",
        "PickupAttemptFailed",
        "InspectionRecorded",
        "RiskDecided",
        "BuyerDetailsRequested",
        "BuyerDetailsProvided",
        "RefundIssued",
        "DisputeOpened",
        "DisputeDecided",
    }
)
RESEND_AFTER_MS = 60_000  # a send whose result never came back is tried again after this
IN_FLIGHT_KEPT = 100_000
log = get_logger(__name__)


@dataclass(frozen=True)
class Send:
    """One message to send now."""

    return_id: str
    notice: Notice
    attempt: int
    recipient_id: str
    message: Message


@dataclass
class NotifyPorts:
    outboxes: MutableMapping[str, Any]  # return_id -> outbox state (outbox.py)
    texts: MessageTexts
    clock_ms: Callable[[], int]
    retry: outbox.RetryTerms = field(default_factory=outbox.RetryTerms)
    keep_ms: int = 7 * 86_400_000  # an ended return's outbox is dropped this long after
    due: DueTimers = field(default_factory=DueTimers)
    in_flight: dict[str, int] = field(default_factory=dict)  # notice key -> sent at


async def take(ports: NotifyPorts, incoming: Incoming) -> list[Outbound]:
    return_id, name, record = incoming.return_id, incoming.name, incoming.record
    state = ports.outboxes.get(return_id)
    now = ports.clock_ms()
    if name in RESULT_EVENTS:
        if state is None:
            return []
        at = record["envelope"]["occurred_at"]
        changed = state
        for result in results_of(name, record):
            changed = _settle(ports, changed, result, at, now)
    else:
        changed = outbox.take_event(state, name, record, now)
        if changed == state:
            return []
    if outbox.finished(changed, now, ports.keep_ms):
        del ports.outboxes[return_id]
        return []
    ports.outboxes[return_id] = changed
    if (due_at := outbox.next_due_at(changed)) is not None:
        ports.due.note(return_id, due_at)
    return []


def results_of(name: str, record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The send results a record carries (NotificationsSettled: all of a pass's for its
    return; the single-message records written before it: one)."""
    if name == "NotificationsSettled":
        return list(record["results"])
    sent = name == "NotificationSent"
    return [{**record, "sent": sent, "attempt": record.get("attempt", record.get("attempts"))}]


def _settle(
    ports: NotifyPorts, state: Any, result: Mapping[str, Any], at_ms: int, now_ms: int
) -> Any:
    key = result["notice_key"]
    ports.in_flight.pop(key, None)
    if result["sent"]:
        return outbox.mark_sent(state, key, at_ms)
    terms = ports.retry if result["retryable"] else outbox.RetryTerms(max_attempts=0)
    changed, gave_up = outbox.mark_failed(state, key, now_ms, terms, result.get("attempt"))
    if gave_up:
        log.warning(
            "notification given up",
            notice_key=key,
            milestone=result["milestone"],
            reason=str(result.get("reason") or "")[:200],
        )
    return changed


def _due_at(state: Any) -> int | None:
    return outbox.next_due_at(state) if isinstance(state, Mapping) else None


def due_sends(ports: NotifyPorts) -> list[Send]:
    """The notices to send now, each rendered for its reader; a notice sent and not yet
    settled is not sent again before RESEND_AFTER_MS."""
    now = ports.clock_ms()
    sends: list[Send] = []
    outboxes = ports.outboxes
    for return_id in ports.due.due(now, outboxes.items(), len(outboxes), _due_at):
        state = outboxes.get(return_id)
        if not isinstance(state, Mapping):
            continue
        to = state.get("to") or {}
        for entry in outbox.ready(state, now):
            sent_at = ports.in_flight.get(entry["key"])
            if sent_at is not None and now - sent_at < RESEND_AFTER_MS:
                continue
            notice = outbox.notice_of(entry)
            ports.in_flight[entry["key"]] = now
            message = ports.texts.render(notice, to.get("market", ""), return_id)
            sends.append(
                Send(
                    return_id, notice, entry["attempts"] + 1, to.get(notice.recipient, ""), message
                )
            )
        if (due_at := outbox.next_due_at(state)) is not None:
            ports.due.note(return_id, max(due_at, now + RESEND_AFTER_MS))
    if len(ports.in_flight) > IN_FLIGHT_KEPT:
        ports.in_flight.clear()
    return sends


def sent_result(send: Send, message_id: str) -> dict[str, Any]:
    return {
        "notice_key": send.notice.key,
        "milestone": send.notice.milestone,
        "recipient_role": send.notice.recipient,
        "attempt": send.attempt,
        "sent": True,
        "language": send.message.language,
        "provider_message_id": message_id,
        "reason": "",
        "retryable": False,
    }


def failed_result(send: Send, reason: str, retryable: bool) -> dict[str, Any]:
    return {
        "notice_key": send.notice.key,
        "milestone": send.notice.milestone,
        "recipient_role": send.notice.recipient,
        "attempt": send.attempt,
        "sent": False,
        "language": send.message.language,
        "provider_message_id": "",
        "reason": reason[:500],
        "retryable": retryable,
    }


def settled_events(results: list[tuple[str, dict[str, Any]]], now_ms: int) -> list[Outbound]:
    """One NotificationsSettled per return of a sending pass (`results`: return id and each
    send's result), its id from the return and what it settles (the same pass redone after a
    crash is the same record)."""
    by_return: dict[str, list[dict[str, Any]]] = {}
    for return_id, result in results:
        by_return.setdefault(return_id, []).append(result)
    events: list[Outbound] = []
    for return_id, settled in by_return.items():
        what = sorted(f"{r['notice_key']}#{r['attempt']}" for r in settled)
        event_id = deterministic_event_id(return_id, "NotificationsSettled", *what)
        envelope = new_envelope(
            "NotificationsSettled", return_id, SERVICE, event_id=event_id, occurred_at=now_ms
        )
        events.append(("NotificationsSettled", {"envelope": envelope, "results": settled}))
    return events


async def return_notifications(
    ports: NotifyPorts, request: HttpRequest, return_id: str
) -> HttpAnswer:
    """GET /returns/{return_id}/notifications: what was sent, what waits, what was given up."""
    state = ports.outboxes.get(return_id)
    if not isinstance(state, Mapping):
        raise ApiError(404, "unknown_return", f"no notifications of {return_id} are kept")
    return HttpAnswer(
        200,
        {
            "return_id": return_id,
            "recipients_known": bool(state.get("to")),
            "sent": [{"notice_key": key, "sent_at": at} for key, at in state["sent"].items()],
            "pending": [
                {
                    "notice_key": entry["key"],
                    "milestone": entry["milestone"],
                    "recipient_role": entry["recipient"],
                    "attempts": entry["attempts"],
                    "next_try_at": entry["next_try_at"],
                }
                for entry in state["outbox"]
            ],
            "given_up": state.get("given_up", 0),
        },
    )
