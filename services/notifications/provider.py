"""The notification provider over HTTP (NOTIFY_URL): `POST /messages/batch`, up to
BATCH_MAX messages a request, each with its notice key as its idempotency key (the same
key sent alone or in a batch is one message). A send is Delivered (the provider took it,
now or before), or Undelivered: retryable when the provider did not answer, answered 5xx
or 429 (for the whole batch, or that entry); not when it refused the message (another 4xx:
sending it again changes nothing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.eventing.partner_http import PartnerHttp, PartnerUnreachable
from services.notifications.handlers import Send

BATCH_MAX = 100  # the provider's limit per request


@dataclass(frozen=True)
class Delivered:
    message_id: str


@dataclass(frozen=True)
class Undelivered:
    reason: str
    retryable: bool


Outcome = Delivered | Undelivered


def _entry(send: Send) -> dict[str, Any]:
    return {
        "idempotency_key": send.notice.key,
        "return_id": send.return_id,
        "recipient_role": send.notice.recipient,
        "recipient_id": send.recipient_id,
        "milestone": send.notice.milestone,
        "language": send.message.language,
        "subject": send.message.subject,
        "body": send.message.body,
    }


def _refused(status: int, reason: str) -> Undelivered:
    return Undelivered(f"HTTP {status}: {reason[:200]}", status >= 500 or status == 429)


def _outcome(result: Any) -> Outcome:
    if not isinstance(result, Mapping):
        return Undelivered("an unreadable answer", retryable=True)
    status = result.get("status")
    if status in (200, 201) and isinstance(result.get("message_id"), str):
        return Delivered(result["message_id"])
    if isinstance(status, int) and status >= 400:
        return _refused(status, f"{result.get('error', '')}: {result.get('detail', '')}")
    return Undelivered("an unreadable answer", retryable=True)


def outcomes_of(sends: Sequence[Send], status: int, answer: Any, text: str) -> list[Outcome]:
    """Each send's outcome from the provider's answer to their batch (pure)."""
    if status != 200:
        return [_refused(status, text)] * len(sends)
    results = answer.get("results") if isinstance(answer, Mapping) else None
    if not isinstance(results, list) or len(results) != len(sends):
        return [Undelivered("an unreadable answer", retryable=True)] * len(sends)
    by_key = {
        result.get("idempotency_key"): result for result in results if isinstance(result, Mapping)
    }
    return [_outcome(by_key.get(send.notice.key)) for send in sends]


class NotifyProvider:
    def __init__(self, http: PartnerHttp) -> None:
        self.http = http

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send_batch(self, sends: Sequence[Send]) -> list[Outcome]:
        """At most BATCH_MAX sends in one request; an outcome for each, in order."""
        if len(sends) > BATCH_MAX:
            raise ValueError(f"{len(sends)} sends: at most {BATCH_MAX} a request")
        # a key twice would make the provider refuse the whole batch: each key sent once
        unique = list({send.notice.key: send for send in sends}.values())
        body = {"messages": [_entry(send) for send in unique]}
        try:
            answer = await self.http.post("/messages/batch", json=body)
        except PartnerUnreachable as exc:
            return [Undelivered(f"no answer: {exc}", retryable=True)] * len(sends)
        try:
            parsed = answer.json() if answer.status_code == 200 else None
        except ValueError:
            parsed = None
        outcomes = outcomes_of(unique, answer.status_code, parsed, answer.text)
        by_key = {send.notice.key: outcome for send, outcome in zip(unique, outcomes, strict=True)}
        return [by_key[send.notice.key] for send in sends]
