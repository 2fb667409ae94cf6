"""Composition root of the refund service.

Consumes RefundRequested (the coordinator's refund command, which follows intake
completion), checks the amount, pays through the provider with the command's idempotency
key and emits RefundIssued or RefundFailed. Each result is stored with the command's id in
the `refunds` table, so a redelivered command re-emits the stored result (same event id)
instead of calling the provider again.
"""

from __future__ import annotations

import os
from typing import Any

from services.eventing.avro_codec import Decoded
from services.eventing.envelope import reply_record
from services.eventing.log_setup import get_logger
from services.eventing.service_runtime import (
    DomainRejection,
    Outbound,
    ServiceParts,
    ServiceSettings,
    add_health_page,
    build_parts,
    json_table,
    raw_topic,
    run_worker,
)
from services.eventing.topics import REFUND_COMMANDS
from services.money import MoneyError
from services.refund.psp_client import PspAnswer, PspClient, psp_http
from services.refund.refund_amount import check_refund_command

SERVICE = "refund"
DEFAULT_PORT = 8087
log = get_logger(__name__)


class InvalidRefundCommand(DomainRejection):
    reason = "invalid-refund"


def result_event(command: dict[str, Any], answer: PspAnswer, provider: str) -> Outbound:
    name = "RefundIssued" if answer.accepted else "RefundFailed"
    body: dict[str, Any] = {
        "amount": command["amount"],
        "method": command["method"],
        "provider": provider,
    }
    if answer.accepted:
        body |= {
            "provider_refund_id": answer.refund_id,
            "status": answer.status if answer.status in ("SUCCEEDED", "PENDING") else "UNKNOWN",
            "idempotency_key": command["idempotency_key"],
        }
    else:
        body |= {"decline_code": answer.decline_code, "detail": answer.detail, "retryable": False}
    return reply(command, name, body)


def reply(command: dict[str, Any], name: str, body: dict[str, Any]) -> Outbound:
    return name, reply_record(command, name, body, SERVICE)


def build(settings: ServiceSettings, psp: PspClient) -> ServiceParts:
    parts = build_parts(settings)
    app = parts.app
    refunds = json_table(app, "refunds")  # return_id -> {command event id: [name, record]}

    async def handle(decoded: Decoded, message: Any) -> list[Outbound]:
        if decoded.name == "RefundVoidRequested":
            return await void(decoded.record)
        command = decoded.record
        return_id = command["envelope"]["return_id"]
        command_id = command["envelope"]["event_id"]
        done = refunds.get(return_id) or {}
        if command_id in done:
            name, record = done[command_id]
            log.info("refund command seen before: stored result re-emitted", result=name)
            return [(name, record)]
        try:
            total = check_refund_command(command["amount"], command["lines"])
        except MoneyError as exc:
            raise InvalidRefundCommand(str(exc)) from exc
        answer = await psp.refund(
            command["idempotency_key"],
            return_id,
            total.amount_minor,
            total.currency,
            command["method"],
        )
        name, record = result_event(command, answer, psp.provider)
        refunds[return_id] = {**done, command_id: [name, record]}
        log.info(
            "refund answered",
            result=name,
            provider_refund_id=answer.refund_id,
            amount_minor=total.amount_minor,
            currency=total.currency,
            replayed=answer.replayed,
        )
        return [(name, record)]

    async def void(command: dict[str, Any]) -> list[Outbound]:
        return_id = command["envelope"]["return_id"]
        refund_id = command.get("provider_refund_id")
        issued = [
            record
            for name, record in (refunds.get(return_id) or {}).values()
            if name == "RefundIssued" and record["provider_refund_id"] == refund_id
        ]
        if not refund_id or not issued:
            raise InvalidRefundCommand(f"no refund {refund_id!r} was issued for {return_id}")
        outcome = await psp.void(refund_id)
        log.info("refund void answered", provider_refund_id=refund_id, outcome=outcome)
        if outcome == "voided":
            return [
                reply(
                    command,
                    "RefundVoided",
                    {"provider_refund_id": refund_id, "amount": issued[0]["amount"]},
                )
            ]
        # the money moved before the void arrived: say so, the saga recovers forward
        settled = {**{k: v for k, v in issued[0].items() if k != "envelope"}, "status": "SUCCEEDED"}
        return [reply(command, "RefundIssued", settled)]

    async def provider_unreachable(decoded: Decoded, error: Exception) -> list[Outbound]:
        if decoded.name != "RefundRequested":
            return []  # an unconfirmed void is retried by the saga's timer
        command = decoded.record
        answer = PspAnswer(False, decline_code="provider_unavailable", detail=str(error)[:200])
        name, record = result_event(command, answer, psp.provider)
        record["retryable"] = True
        return [(name, record)]

    @app.agent(raw_topic(app, REFUND_COMMANDS.name), name="refund-commands", concurrency=1)
    async def refund_commands(stream: Any) -> None:
        await parts.consumer.run(stream, handle, on_exhausted=provider_unreachable)

    add_health_page(app, SERVICE)
    return parts


def main() -> int:
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    psp = PspClient(
        psp_http(
            os.environ.get("PSP_URL", "http://127.0.0.1:8092"),
            float(os.environ.get("PSP_TIMEOUT_S", "5")),
        )
    )
    return run_worker(build(settings, psp).app, SERVICE)
