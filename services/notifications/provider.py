"""The notification provider over HTTP (NOTIFY_URL): `POST /messages` with the notice key
as its Idempotency-Key. A send is Delivered (2xx: the provider took it, now or before), or
Undelivered: retryable when the provider did not answer, answered 5xx or 429; not when it
refused the message (another 4xx: sending it again changes nothing)."""

from __future__ import annotations

from dataclasses import dataclass

from services.eventing.partner_http import PartnerHttp, PartnerUnreachable
from services.notifications.handlers import Send


@dataclass(frozen=True)
class Delivered:
    message_id: str


@dataclass(frozen=True)
class Undelivered:
    reason: str
    retryable: bool


class NotifyProvider:
    def __init__(self, http: PartnerHttp) -> None:
        self.http = http

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, send: Send) -> Delivered | Undelivered:
        body = {
            "return_id": send.return_id,
            "recipient_role": send.notice.recipient,
            "recipient_id": send.recipient_id,
            "milestone": send.notice.milestone,
            "language": send.message.language,
            "subject": send.message.subject,
            "body": send.message.body,
        }
        try:
            answer = await self.http.post(
                "/messages", json=body, headers={"Idempotency-Key": send.notice.key}
            )
        except PartnerUnreachable as exc:
            return Undelivered(f"no answer: {exc}", retryable=True)
        if answer.status_code in (200, 201):
            try:
                return Delivered(str(answer.json()["message_id"]))
            except (ValueError, KeyError, TypeError):
                return Undelivered("an unreadable answer", retryable=True)
        retryable = answer.status_code >= 500 or answer.status_code == 429
        return Undelivered(f"HTTP {answer.status_code}: {answer.text[:200]}", retryable)
