"""Composition root of the refund service: it settles a return with the buyer.

Consumes the coordinator's commands:
- RefundRequested: checks the amount, routes the refund to the provider(s) configured for its
  method (failing over to the second provider when the first cannot be reached at all), pays
  with the command's idempotency key and emits RefundIssued or RefundFailed (its decline code
  mapped to RETRY / FALLBACK / NEEDS_ATTENTION).
- RefundVoidRequested: voids a pending refund at the provider that holds it.
- ReplacementOrderRequested (exchange): asks the marketplace for a replacement order and
  emits ReplacementOrderPlaced or ReplacementOutOfStock.
- RefundReservationRequested / RefundReservationReleaseRequested (the order refund ledger,
  keyed by order_ref): works a return's refund out after every other live return of the same
  order and holds its share (`order_refund_ledger`), or gives it back; answers RefundReserved,
  RefundReservationRefused or RefundReservationReleased.
Each result is stored with the command's id, so a redelivered command re-emits the stored
result (same event id) instead of calling a partner again; the provider a refund reached is
stored with its idempotency key, so a retry never goes to another provider.

`GET /orders/{order_ref}/refunds` shows an order's live and released returns.
`POST /webhooks/psp` takes the providers' signed settlement webhooks and emits RefundSettled
or RefundFailed with an event id derived from the webhook, so re-deliveries are one event.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.decisions.money import MoneyError
from services.decisions.refunds import order_refund_ledger
from services.decisions.refunds.decline_codes import NextAction, next_action
from services.decisions.refunds.provider_routing import ProviderRoutes, providers_to_try
from services.decisions.refunds.refund_amount import check_refund_command
from services.eventing.avro_codec import Decoded
from services.eventing.envelope import reply_record
from services.eventing.http_api import ApiError, json_endpoint, parse_json_object, post_page
from services.eventing.log_setup import event_context, get_logger
from services.eventing.openapi_docs import add_openapi_page
from services.eventing.service_runtime import (
    DomainRejection,
    Outbound,
    ServiceParts,
    ServiceSettings,
    TransientFailure,
    add_health_page,
    build_parts,
    json_table,
    raw_topic,
    run_worker,
    tables_recovering,
)
from services.eventing.topics import ORDER_REFUND_LEDGER, REFUND_COMMANDS
from services.refund.marketplace_client import MarketplaceClient, marketplace_http
from services.refund.psp_client import (
    PROVIDER,
    ProviderDown,
    PspAnswer,
    PspClient,
    RefundOrder,
    psp_http,
)
from services.refund.psp_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from services.refund.webhook_parsing import provider_of, webhook_event

SERVICE = "refund"
DEFAULT_PORT = 8087
DEFAULT_WEBHOOK_SECRET = "dev-psp-webhook-secret"
log = get_logger(__name__)


class InvalidRefundCommand(DomainRejection):
    reason = "invalid-refund"


class MisroutedLedgerCommand(DomainRejection):
    reason = "ledger-key-not-order-ref"


@dataclass
class Partners:
    """The providers by name, how methods route to them, their webhook secrets, and the
    marketplace (for exchanges)."""

    providers: dict[str, PspClient]
    routes: ProviderRoutes
    webhook_secrets: dict[str, bytes] = field(default_factory=dict)
    marketplace: MarketplaceClient | None = None


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
            "schedule": [
                {
                    "number": int(i["number"]),
                    "due_at": int(i["due_at"]),
                    "amount_minor": int(i["amount_minor"]),
                    "status": str(i["status"]).upper(),
                }
                for i in answer.schedule
            ],
            "refunded_to_buyer_minor": answer.refunded_to_buyer_minor,
            "settles_at": answer.settles_at,
        }
    else:
        body |= {
            "idempotency_key": command["idempotency_key"],
            "decline_code": answer.decline_code,
            "detail": answer.detail,
            "retryable": False,
            "next_action": str(next_action(answer.decline_code)),
        }
    return reply(command, name, body)


def reply(command: dict[str, Any], name: str, body: dict[str, Any]) -> Outbound:
    return name, reply_record(command, name, body, SERVICE)


def refund_order(command: dict[str, Any], return_id: str, amount_minor: int) -> RefundOrder:
    return RefundOrder(
        key=command["idempotency_key"],
        return_id=return_id,
        amount_minor=amount_minor,
        currency=command["amount"]["currency"],
        method=command["method"],
        refund_account=command.get("refund_account"),
        order_ref=command.get("order_ref") or "",
        order_paid_minor=command.get("order_paid_minor"),
    )


def build(settings: ServiceSettings, partners: Partners) -> ServiceParts:
    parts = build_parts(settings)
    app = parts.app
    refunds = json_table(app, "refunds")  # return_id -> {command event id: [name, record]}
    routes = json_table(app, "refund-routes")  # return_id -> {idempotency key: provider}

    async def handle(decoded: Decoded, message: Any) -> list[Outbound]:
        command = decoded.record
        return_id = command["envelope"]["return_id"]
        command_id = command["envelope"]["event_id"]
        done = refunds.get(return_id) or {}
        if command_id in done:
            name, record = done[command_id]
            log.info("command seen before: stored result re-emitted", result=name)
            return [(name, record)]
        if decoded.name == "RefundVoidRequested":
            outbound = await void(command)
        elif decoded.name == "ReplacementOrderRequested":
            outbound = await replace(command)
        else:
            outbound = await pay(command)
        refunds[return_id] = {**done, command_id: list(outbound[0])}
        return outbound

    async def pay(command: dict[str, Any]) -> list[Outbound]:
        return_id = command["envelope"]["return_id"]
        try:
            total = check_refund_command(command["amount"], command["lines"])
        except MoneyError as exc:
            raise InvalidRefundCommand(str(exc)) from exc
        order = refund_order(command, return_id, total.amount_minor)
        reached = routes.get(return_id) or {}
        candidates = providers_to_try(partners.routes, order.method, reached.get(order.key))
        down: list[str] = []
        for provider in candidates:
            client = partners.providers[provider]
            try:
                answer = await client.refund(order)
            except ProviderDown as exc:
                down.append(provider)
                log.warning("provider down: trying the next one", provider=provider, error=str(exc))
                continue
            except TransientFailure:
                # the request may have reached this provider: it keeps the refund for good
                routes[return_id] = {**reached, order.key: provider}
                raise
            routes[return_id] = {**reached, order.key: provider}
            name, record = result_event(command, answer, provider)
            log.info(
                "refund answered",
                result=name,
                provider=provider,
                failed_over_from=down or None,
                method=order.method,
                provider_refund_id=answer.refund_id,
                amount_minor=total.amount_minor,
                currency=total.currency,
                decline_code=answer.decline_code or None,
                replayed=answer.replayed,
            )
            return [(name, record)]
        raise ProviderDown(f"every provider for {order.method} is down: {', '.join(down)}")

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
        provider = issued[0]["provider"]
        client = partners.providers.get(provider) or partners.providers[PROVIDER]
        outcome = await client.void(refund_id)
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

    async def replace(command: dict[str, Any]) -> list[Outbound]:
        if partners.marketplace is None:
            raise TransientFailure("no marketplace configured (MARKETPLACE_URL)")
        answer = await partners.marketplace.place_replacement(
            command["idempotency_key"],
            command["envelope"]["return_id"],
            command["order_ref"],
            command["buyer_id"],
            command["sku"],
            command["quantity"],
            command.get("ship_to") or "",
        )
        log.info(
            "replacement order answered",
            placed=answer.placed,
            replacement_order_id=answer.replacement_order_id or None,
            sku=command["sku"],
        )
        if answer.placed:
            body = {
                "replacement_order_id": answer.replacement_order_id,
                "sku": command["sku"],
                "quantity": command["quantity"],
            }
            return [reply(command, "ReplacementOrderPlaced", body)]
        body = {"sku": command["sku"], "available": answer.available}
        return [reply(command, "ReplacementOutOfStock", body)]

    async def partner_unreachable(decoded: Decoded, error: Exception) -> list[Outbound]:
        if decoded.name != "RefundRequested":
            return []  # an unconfirmed void or replacement is retried by the saga's timer
        command = decoded.record
        provider = (routes.get(command["envelope"]["return_id"]) or {}).get(
            command["idempotency_key"], "none reached"
        )
        answer = PspAnswer(False, decline_code="provider_unavailable", detail=str(error)[:200])
        name, record = result_event(command, answer, provider)
        record["retryable"] = True
        record["next_action"] = str(NextAction.RETRY)
        return [(name, record)]

    @app.agent(raw_topic(app, REFUND_COMMANDS.name), name="refund-commands", concurrency=1)
    async def refund_commands(stream: Any) -> None:
        await parts.consumer.run(stream, handle, on_exhausted=partner_unreachable)

    order_ledger = json_table(app, "order-ledger")  # order_ref -> live returns and their shares

    async def keep_order_ledger(decoded: Decoded, message: Any) -> list[Outbound]:
        command = decoded.record
        order_ref = command["order_ref"]
        if message.key != order_ref.encode():
            # written under another key, the entry would have two owners
            raise MisroutedLedgerCommand(f"key {message.key!r} is not the order_ref {order_ref}")
        return_id = command["envelope"]["return_id"]
        if decoded.name == "RefundReservationRequested":
            entry, answer = order_refund_ledger.reserve(
                order_ledger.get(order_ref), return_id, command
            )
        else:
            entry, answer = order_refund_ledger.release(
                order_ledger.get(order_ref), return_id, command
            )
        if entry != order_ledger.get(order_ref):
            order_ledger[order_ref] = entry
        log.info(
            "order refund ledger",
            order_ref=order_ref,
            answer=answer.name,
            reserved_minor=order_refund_ledger.summary(entry)["reserved_minor"],
        )
        return [reply(command, answer.name, answer.body)]

    @app.agent(raw_topic(app, ORDER_REFUND_LEDGER.name), name="order-ledger", concurrency=1)
    async def order_ledger_commands(stream: Any) -> None:
        await parts.consumer.run(stream, keep_order_ledger, keyed_by_return=False)

    @app.page("/orders/{order_ref}/refunds")
    async def order_refunds(web: Any, request: Any, order_ref: str) -> Any:
        if (recovering := tables_recovering(app, web)) is not None:
            return recovering
        entry = order_ledger.get(order_ref)
        if not entry:
            detail = f"no returns of {order_ref}"
            return web.json({"error": "not_found", "detail": detail}, status=404)
        return web.json(order_refund_ledger.summary(entry))

    @json_endpoint
    async def psp_webhook(web: Any, request: Any) -> Any:
        body = await request.read()
        provider = provider_of(parse_json_object(body))
        secret = partners.webhook_secrets.get(provider)
        if secret is None:
            raise ApiError(401, "unknown_provider", f"no webhook secret for {provider!r}")
        try:
            verify(
                secret,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                body,
                int(time.time()),
            )
        except SignatureError as exc:
            raise ApiError(401, "bad_signature", str(exc)) from exc
        name, record = webhook_event(parse_json_object(body), SERVICE)
        with event_context(record["envelope"]):
            await parts.publisher.publish([(name, record)])
            log.info("provider webhook", event_type=name, provider=provider)
        return web.json({"accepted": True, "event_id": record["envelope"]["event_id"]}, status=202)

    post_page(app, "/webhooks/psp", psp_webhook)
    add_health_page(app, SERVICE)
    add_openapi_page(app, Path(__file__).with_name("openapi.json"))
    return parts


def partners_from_env(env: dict[str, str] | os._Environ[str] = os.environ) -> Partners:
    """PSP_PROVIDERS (JSON name → URL; default {"psp": PSP_URL}), REFUND_PROVIDER_ROUTES (JSON
    method → provider names, "*" for the rest; default: the first provider for everything),
    PSP_WEBHOOK_SECRETS (JSON name → secret; default PSP_WEBHOOK_SECRET for every provider),
    MARKETPLACE_URL, PSP_TIMEOUT_S."""
    timeout = float(env.get("PSP_TIMEOUT_S", "5"))
    urls: dict[str, str] = json.loads(
        env.get("PSP_PROVIDERS")
        or json.dumps({PROVIDER: env.get("PSP_URL", "http://127.0.0.1:8092")})
    )
    providers = {name: PspClient(psp_http(url, timeout), name) for name, url in urls.items()}
    routes_text = env.get("REFUND_PROVIDER_ROUTES")
    routes = (
        ProviderRoutes.parse(routes_text, list(providers))
        if routes_text
        else ProviderRoutes.single(next(iter(providers)))
    )
    default_secret = env.get("PSP_WEBHOOK_SECRET", DEFAULT_WEBHOOK_SECRET)
    secrets = {name: default_secret for name in providers}
    secrets.update(json.loads(env.get("PSP_WEBHOOK_SECRETS") or "{}"))
    marketplace_url = env.get("MARKETPLACE_URL")
    return Partners(
        providers,
        routes,
        {name: secret.encode() for name, secret in secrets.items()},
        MarketplaceClient(marketplace_http(marketplace_url, timeout)) if marketplace_url else None,
    )


def main() -> int:
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    return run_worker(build(settings, partners_from_env()).app, SERVICE)
