"""One return's notifications as stored state, and how events change it (pure).

The state of a return (a plain dict, JSON-ready):

- `to`: the recipients' ids and the market (from the return's request, ReturnAccepted or
  ReturnRejected); until it is known, notices wait in the outbox;
- `outbox`: notices not sent yet, each with its attempts and when it is tried next;
- `sent`: key -> when the provider took it (a notice seen again is not queued again);
- `told`: what each queued notice says (its milestone, recipient and facts, hashed) -> when:
  another event saying the same thing (a command retried after a timeout and redriven from
  the dead letters too: two PickupScheduled for one booking) is not told twice;
- `given_up`: how many were abandoned after `RetryTerms.max_attempts`;
- `ended_at`: when the return ended (ReturnCompleted/ReturnFailed, a rejection): the state
  is dropped `keep_ms` after that once nothing is left to send (`finished`).

Bounded: a return has a few dozen milestones at most; `sent` and `told` keep at most
MAX_SENT keys each (the oldest dropped first: the provider's idempotency still refuses a
duplicate).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from services.decisions.notifications.milestones import CONTEXT_EVENTS, Notice, notices_of

MAX_SENT = 64
MAX_OUTBOX = 64
ENDING_EVENTS = ("ReturnCompleted", "ReturnFailed", "ReturnRejected", "DisputeDecided")


@dataclass(frozen=True)
class RetryTerms:
    first_delay_ms: int = 5_000
    factor: float = 2.0
    max_delay_ms: int = 600_000
    max_attempts: int = 12  # ~1.5 h of trying

    def delay_ms(self, attempts: int) -> int:
        return int(
            min(self.max_delay_ms, self.first_delay_ms * self.factor ** max(0, attempts - 1))
        )


def empty() -> dict[str, Any]:
    return {"to": None, "outbox": [], "sent": {}, "told": {}, "given_up": 0, "ended_at": None}


def what_it_says(notice: Notice) -> str:
    """The same for two notices that would be the same message to the same reader."""
    said = json.dumps([notice.milestone, notice.recipient, notice.facts], sort_keys=True)
    return hashlib.sha1(said.encode()).hexdigest()[:16]


def _recipients(name: str, record: Mapping[str, Any]) -> dict[str, str] | None:
    if name not in CONTEXT_EVENTS:
        return None
    requested = record.get("requested") or {}
    return {
        "buyer": str(requested.get("buyer_id") or ""),
        "seller": str(requested.get("seller_id") or ""),
        "market": str(requested.get("market") or ""),
    }


def take_event(
    state: Mapping[str, Any] | None, name: str, record: Mapping[str, Any], now_ms: int
) -> dict[str, Any]:
    """The state after an event: its recipients learned, its notices queued (each once)."""
    new = {**empty(), **(state or {})}
    new["outbox"] = list(new["outbox"])
    if (to := _recipients(name, record)) is not None and new["to"] is None:
        new["to"] = to
    queued = {entry["key"] for entry in new["outbox"]}
    told = dict(new.get("told") or {})
    for notice in notices_of(name, record):
        said = what_it_says(notice)
        if (
            notice.key in new["sent"]
            or notice.key in queued
            or said in told
            or len(new["outbox"]) >= MAX_OUTBOX
        ):
            continue
        new["outbox"].append({**asdict(notice), "attempts": 0, "next_try_at": now_ms})
        told[said] = notice.at_ms
    while len(told) > MAX_SENT:
        told.pop(next(iter(told)))
    new["told"] = told
    if name == "DisputeOpened":
        new["ended_at"] = None  # the return is open again until the dispute is decided
    elif name in ENDING_EVENTS and new["ended_at"] is None:
        new["ended_at"] = int(record["envelope"]["occurred_at"])
    return new


def ready(state: Mapping[str, Any], now_ms: int) -> list[dict[str, Any]]:
    """The notices to send now (their recipients known, their time come)."""
    if not state.get("to"):
        return []
    return [entry for entry in state["outbox"] if entry["next_try_at"] <= now_ms]


def next_due_at(state: Mapping[str, Any]) -> int | None:
    """When the earliest notice is due (None: nothing to send, or recipients unknown)."""
    if not state.get("to") or not state["outbox"]:
        return None
    return min(entry["next_try_at"] for entry in state["outbox"])


def mark_sent(state: Mapping[str, Any], key: str, at_ms: int) -> dict[str, Any]:
    sent = {**state["sent"], key: at_ms}
    while len(sent) > MAX_SENT:
        sent.pop(next(iter(sent)))
    outbox = [entry for entry in state["outbox"] if entry["key"] != key]
    return {**state, "sent": sent, "outbox": outbox}


def mark_failed(
    state: Mapping[str, Any], key: str, at_ms: int, terms: RetryTerms, attempt: int | None = None
) -> tuple[dict[str, Any], bool]:
    """After a failed send (its `attempt`, when known): tried again later, or given up after
    `max_attempts` (True). A failure of an attempt already counted (redelivered) changes
    nothing."""
    outbox, gave_up = [], False
    for entry in state["outbox"]:
        if entry["key"] != key or (attempt is not None and entry["attempts"] >= attempt):
            outbox.append(entry)
            continue
        attempts = entry["attempts"] + 1
        if attempts >= terms.max_attempts:
            gave_up = True
            continue
        outbox.append(
            {**entry, "attempts": attempts, "next_try_at": at_ms + terms.delay_ms(attempts)}
        )
    given_up = state.get("given_up", 0) + (1 if gave_up else 0)
    return {**state, "outbox": outbox, "given_up": given_up}, gave_up


def finished(state: Mapping[str, Any], now_ms: int, keep_ms: int) -> bool:
    """Nothing left to send and the return ended more than `keep_ms` ago: drop the state."""
    ended = state.get("ended_at")
    return ended is not None and not state["outbox"] and now_ms - ended > keep_ms


def notice_of(entry: Mapping[str, Any]) -> Notice:
    return Notice(
        entry["key"], entry["milestone"], entry["recipient"], dict(entry["facts"]), entry["at_ms"]
    )
