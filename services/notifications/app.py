"""Composition root of the notifier: the `outboxes` table wired to the handlers
(services/notifications/handlers.py), one consumer of every milestone's topic and of its
own results, a timer sending the due notices through the provider (NOTIFY_URL) and
publishing what happened, and GET /returns/{return_id}/notifications.

Configuration: NOTIFY_URL (the provider; the double's port by default), NOTIFY_TIMEOUT_S
(5), NOTIFY_BATCH (100 messages a request, the provider's most), NOTIFY_CONCURRENCY (4
requests at once), NOTIFY_MAX_ATTEMPTS (12, from 5 s doubling to
10 min apart), NOTIFY_KEEP_DAYS (7: an ended return's outbox kept), texts as
texts_files.py says.
"""

from __future__ import annotations

import asyncio
import os
from functools import partial
from pathlib import Path
from typing import Any

from services.decisions.notifications.outbox import RetryTerms
from services.engine import worker as runtime
from services.engine.due_timers import DueTimers
from services.eventing.envelope import now_ms
from services.eventing.handler_contract import Route, Subscription, Wiring
from services.eventing.log_setup import event_context, get_logger
from services.eventing.partner_http import PartnerHttp
from services.eventing.request_keys import path_parameter
from services.eventing.topics import (
    INSPECTION_EVENTS,
    NOTIFICATION_EVENTS,
    PICKUP_EVENTS,
    REFUND_EVENTS,
    RETURNS_EVENTS,
    RISK_EVENTS,
    SAGA_EVENTS,
)
from services.notifications import handlers
from services.notifications.handlers import SERVICE, NotifyPorts, Send
from services.notifications.notification_metrics import (
    NOTIFICATION_DELAY_SECONDS,
    NOTIFICATION_SEND_FAILURES,
    NOTIFICATIONS_GIVEN_UP,
    NOTIFICATIONS_SENT,
)
from services.notifications.provider import BATCH_MAX, Delivered, NotifyProvider, Outcome
from services.notifications.texts_files import load_texts

DEFAULT_PORT = 8096
SEND_SCAN_S = 1.0
MILESTONE_TOPICS = (
    RETURNS_EVENTS,
    PICKUP_EVENTS,
    INSPECTION_EVENTS,
    RISK_EVENTS,
    REFUND_EVENTS,
    SAGA_EVENTS,
    NOTIFICATION_EVENTS,
)
log = get_logger(__name__)


def wiring(ports: NotifyPorts) -> Wiring:
    milestones = Subscription(
        "milestones",
        tuple(topic.name for topic in MILESTONE_TOPICS),
        partial(handlers.take, ports),
        accepts=handlers.TAKEN,
    )
    listing = Route(
        "GET",
        "/returns/{return_id}/notifications",
        partial(handlers.return_notifications, ports),
        reads_tables=True,
        owner_key=path_parameter("return_id"),
    )
    return Wiring((milestones,), (listing,))


async def send_batch(
    provider: NotifyProvider, sends: list[Send], max_attempts: int
) -> list[tuple[str, dict[str, Any]]]:
    outcomes = await provider.send_batch(sends)
    now = now_ms()
    return [
        settle_one(send, outcome, now, max_attempts)
        for send, outcome in zip(sends, outcomes, strict=True)
    ]


def settle_one(
    send: Send, result: Outcome, now: int, max_attempts: int
) -> tuple[str, dict[str, Any]]:
    with event_context(return_id=send.return_id, notice_key=send.notice.key):
        milestone = send.notice.milestone
        if isinstance(result, Delivered):
            NOTIFICATIONS_SENT.labels(milestone, send.notice.recipient, send.message.language).inc()
            NOTIFICATION_DELAY_SECONDS.observe(max(0.0, (now - send.notice.at_ms) / 1000))
            log.debug("notification sent", milestone=milestone, attempt=send.attempt)
            return send.return_id, handlers.sent_result(send, result.message_id)
        NOTIFICATION_SEND_FAILURES.labels(milestone, str(result.retryable).lower()).inc()
        if not result.retryable or send.attempt >= max_attempts:
            NOTIFICATIONS_GIVEN_UP.labels(milestone).inc()
        log.info("notification send failed", milestone=milestone, reason=result.reason[:200])
        return send.return_id, handlers.failed_result(send, result.reason, result.retryable)


def build(settings: runtime.ServiceSettings) -> runtime.ServiceParts:
    def wire(parts: runtime.ServiceParts) -> Wiring:
        outboxes = parts.table("outboxes", expires=True)
        retry = RetryTerms(max_attempts=int(os.environ.get("NOTIFY_MAX_ATTEMPTS", "12")))
        ports = NotifyPorts(
            outboxes,
            load_texts(),
            now_ms,
            retry=retry,
            keep_ms=int(float(os.environ.get("NOTIFY_KEEP_DAYS", "7")) * 86_400_000),
            due=DueTimers(reloads=lambda: outboxes.reloads),
        )
        provider = NotifyProvider(
            PartnerHttp(
                os.environ.get("NOTIFY_URL", "http://127.0.0.1:8095"),
                float(os.environ.get("NOTIFY_TIMEOUT_S", "5")),
                partner="notify",
            )
        )
        parts.on_stop(provider.aclose)
        limit = asyncio.Semaphore(int(os.environ.get("NOTIFY_CONCURRENCY", "4")))
        batch = max(1, min(BATCH_MAX, int(os.environ.get("NOTIFY_BATCH", str(BATCH_MAX)))))

        async def bounded(sends: list[Send]) -> list[tuple[str, dict[str, Any]]]:
            async with limit:
                return await send_batch(provider, sends, retry.max_attempts)

        async def send_due() -> None:
            if not parts.ready:
                return
            if sends := handlers.due_sends(ports):
                chunks = [sends[i : i + batch] for i in range(0, len(sends), batch)]
                answered = await asyncio.gather(*(bounded(chunk) for chunk in chunks))
                results = [result for chunk in answered for result in chunk]
                await parts.publish_durably(handlers.settled_events(results, now_ms()))

        parts.every(SEND_SCAN_S, send_due)
        return wiring(ports)

    return runtime.build_service(settings, wire, Path(__file__).with_name("openapi.json"))


def main() -> int:
    return runtime.run_service(SERVICE, DEFAULT_PORT, build)
