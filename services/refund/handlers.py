"""The refund service's handlers: it settles a return with the buyer.

Consumes the coordinator's commands:
- RefundRequested: checks the amount, routes the refund to the provider(s) configured for its
  method (failing over to the second provider when the first cannot be reached at all), pays
  with the command's idempotency key and emits RefundIssued or RefundFailed (its decline code
  mapped to RETRY / FALLBACK / NEEDS_ATTENTION).
- RefundVoidRequested: voids a pending refund at the provider that holds it.
- ChargeRequested (an exchange to a dearer variant): charges the buyer the difference through
  the provider of the order's payment method (the same routes and failover) and emits
  ChargeCaptured or ChargeFailed.
- ReplacementOrderRequested (exchange): asks the marketplace for a replacement order and
  emits ReplacementOrderPlaced or ReplacementOutOfStock.
- RefundReservationRequested / RefundReservationReleaseRequested (the order refund ledger,
  keyed by order_ref): works a return's refund out after every other live return of the same
  order and holds its share (`order_refund_ledger`), or gives it back; answers RefundReserved,
  RefundReservationRefused or RefundReservationReleased.
Each result is stored with the command's id, so a redelivered command re-emits the stored
result (same event id) instead of calling a partner again: the results are a view folded
from refund.events (`fold_answers`), where they are written anyway. The provider a refund
reached while its answer is unknown is stored with its idempotency key, so a retry never
goes to another provider.

`GET /orders/{order_ref}/refunds` shows an order's live and released returns.
`POST /webhooks/psp` takes the providers' signed settlement webhooks and emits RefundSettled
or RefundFailed with an event id derived from the webhook, so re-deliveries are one event.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.decisions.money import MoneyError
from services.decisions.refunds import order_refund_ledger
from services.decisions.refunds.decline_codes import NextAction, next_action
from services.decisions.refunds.provider_routing import ProviderRoutes, providers_to_try
from services.decisions.refunds.refund_amount import check_refund_command
from services.eventing.answered_commands import answer_once, answers_fold
from services.eventing.envelope import reply_record
from services.eventing.handler_contract import (
    DomainRejection,
    HttpAnswer,
    HttpRequest,
    Incoming,
    Outbound,
    Publish,
    TransientFailure,
)
from services.eventing.log_setup import get_logger
from services.eventing.request_fields import ApiError, parse_json_object
from services.eventing.signed_webhooks import publish_signed_event
from services.eventing.webhook_signature import PSP_SIGNATURE
from services.refund import refund_metrics
from services.refund.marketplace_client import ReplacementAnswer, ReplacementOrder
from services.refund.psp_client import (
    PROVIDER,
    ChargeOrder,
    ProviderDown,
    PspAnswer,
    RefundOrder,
)
from services.refund.webhook_parsing import provider_of, webhook_event

SERVICE = "refund"
log = get_logger(__name__)


class InvalidRefundCommand(DomainRejection):
    reason = "invalid-refund"


class MisroutedLedgerCommand(DomainRejection):
    reason = "ledger-key-not-order-ref"


class PaymentProvider(Protocol):
    async def refund(self, order: RefundOrder) -> PspAnswer: ...

    async def charge(self, order: ChargeOrder) -> PspAnswer: ...

    async def void(self, refund_id: str) -> str: ...


class Marketplace(Protocol):
    async def place_replacement(self, order: ReplacementOrder) -> ReplacementAnswer: ...


@dataclass
class Partners:
    """The providers by name, how methods route to them, their webhook secrets, and the
    marketplace (for exchanges)."""

    providers: dict[str, PaymentProvider]
    routes: ProviderRoutes
    webhook_secrets: dict[str, bytes] = field(default_factory=dict)
    marketplace: Marketplace | None = None


# what a command is answered with (stored): the view of them is folded from refund.events
ANSWERS = frozenset(
    {
        "RefundIssued",
        "RefundFailed",
        "RefundVoided",
        "ReplacementOrderPlaced",
        "ReplacementOutOfStock",
        "ChargeCaptured",
        "ChargeFailed",
    }
)


def _given_up(name: str, record: dict[str, Any]) -> bool:
    """A retryable RefundFailed (or ChargeFailed) is the answer of a command that gave up
    (partner_unreachable): not stored, so a redelivered command asks again."""
    return name in ("RefundFailed", "ChargeFailed") and bool(record.get("retryable"))


fold_answers = answers_fold(ANSWERS, _given_up)


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


@dataclass
class RefundPorts:
    refunds: MutableMapping[str, Any]  # return_id -> {command event id: [name, record]}
    # return_id -> {idempotency key: provider}, for a request whose answer is not known
    routes: MutableMapping[str, Any]
    order_ledger: MutableMapping[str, Any]  # order_ref -> live returns and their shares
    partners: Partners
    publish: Publish
    clock_s: Callable[[], int]


async def handle_refund_command(ports: RefundPorts, incoming: Incoming) -> list[Outbound]:
    """Each result is stored with the command's id: a redelivered command re-emits it."""
    return await answer_once(ports.refunds, incoming, lambda: answer_command(ports, incoming))


async def answer_command(ports: RefundPorts, incoming: Incoming) -> list[Outbound]:
    if incoming.name == "RefundVoidRequested":
        return await void(ports, incoming.record)
    if incoming.name == "ReplacementOrderRequested":
        return await replace(ports.partners, incoming.record)
    if incoming.name == "ChargeRequested":
        return await charge(ports, incoming.record)
    return await pay(ports, incoming.record)


async def charge(ports: RefundPorts, command: dict[str, Any]) -> list[Outbound]:
    """Charge the buyer (an exchange to a dearer variant) through the provider of the
    order's payment method, failing over like a refund; ChargeCaptured or ChargeFailed."""
    return_id = command["envelope"]["return_id"]
    amount = command["amount"]
    if not isinstance(amount.get("amount_minor"), int) or amount["amount_minor"] <= 0:
        raise InvalidRefundCommand(f"a charge must be positive, got {amount}")
    order = ChargeOrder(
        command["idempotency_key"],
        return_id,
        amount["amount_minor"],
        amount["currency"],
        command["method"],
        command["order_ref"],
        command["reason"],
    )
    reached = ports.routes.get(return_id) or {}
    candidates = providers_to_try(ports.partners.routes, order.method, reached.get(order.key))
    down: list[str] = []
    for provider in candidates:
        try:
            answer = await ports.partners.providers[provider].charge(order)
        except ProviderDown:
            down.append(provider)
            continue
        except TransientFailure:
            ports.routes[return_id] = {**reached, order.key: provider}
            raise
        body: dict[str, Any] = {
            "amount": amount,
            "method": command["method"],
            "provider": provider,
            "idempotency_key": order.key,
        }
        log.info("charge answered", provider=provider, accepted=answer.accepted)
        if answer.accepted:
            body |= {"provider_charge_id": answer.refund_id, "order_ref": order.order_ref}
            return [reply(command, "ChargeCaptured", body)]
        body |= {"decline_code": answer.decline_code, "detail": answer.detail, "retryable": False}
        return [reply(command, "ChargeFailed", body)]
    raise ProviderDown(f"every provider for {order.method} is down: {', '.join(down)}")


async def pay(ports: RefundPorts, command: dict[str, Any]) -> list[Outbound]:
    return_id = command["envelope"]["return_id"]
    try:
        total = check_refund_command(command["amount"], command["lines"])
    except MoneyError as exc:
        raise InvalidRefundCommand(str(exc)) from exc
    order = refund_order(command, return_id, total.amount_minor)
    reached = ports.routes.get(return_id) or {}
    candidates = providers_to_try(ports.partners.routes, order.method, reached.get(order.key))
    down: list[str] = []
    for provider in candidates:
        client = ports.partners.providers[provider]
        try:
            answer = await client.refund(order)
        except ProviderDown as exc:
            down.append(provider)
            log.warning("provider down: trying the next one", provider=provider, error=str(exc))
            continue
        except TransientFailure:
            # the request may have reached this provider: it keeps the refund for good (an
            # answered one needs no route: the answer, stored with its provider, is re-emitted)
            ports.routes[return_id] = {**reached, order.key: provider}
            raise
        name, record = result_event(command, answer, provider)
        refund_metrics.refund_answered(order.method, provider, answer.accepted)
        log.debug(
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


async def void(ports: RefundPorts, command: dict[str, Any]) -> list[Outbound]:
    return_id = command["envelope"]["return_id"]
    refund_id = command.get("provider_refund_id")
    issued = [
        record
        for name, record in (ports.refunds.get(return_id) or {}).values()
        if name == "RefundIssued" and record["provider_refund_id"] == refund_id
    ]
    if not refund_id or not issued:
        raise InvalidRefundCommand(f"no refund {refund_id!r} was issued for {return_id}")
    provider = issued[0]["provider"]
    providers = ports.partners.providers
    outcome = await (providers.get(provider) or providers[PROVIDER]).void(refund_id)
    log.info("refund void answered", provider_refund_id=refund_id, outcome=outcome)
    if outcome == "voided":
        voided = {"provider_refund_id": refund_id, "amount": issued[0]["amount"]}
        return [reply(command, "RefundVoided", voided)]
    # the money moved before the void arrived: say so, the saga recovers forward
    settled = {**{k: v for k, v in issued[0].items() if k != "envelope"}, "status": "SUCCEEDED"}
    return [reply(command, "RefundIssued", settled)]


async def replace(partners: Partners, command: dict[str, Any]) -> list[Outbound]:
    if partners.marketplace is None:
        raise TransientFailure("no marketplace configured (MARKETPLACE_URL)")
    order = ReplacementOrder(
        command["idempotency_key"],
        command["envelope"]["return_id"],
        command["order_ref"],
        command["buyer_id"],
        command["sku"],
        command["quantity"],
        command.get("ship_to") or "",
    )
    answer = await partners.marketplace.place_replacement(order)
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


async def partner_unreachable(
    ports: RefundPorts, incoming: Incoming, error: Exception
) -> list[Outbound]:
    """A refund whose provider calls outlived their retries: a retryable RefundFailed the
    saga retries later (an unconfirmed void or replacement is retried by the saga's timer)."""
    if incoming.name == "ChargeRequested":
        command = incoming.record
        provider = (ports.routes.get(incoming.return_id) or {}).get(
            command["idempotency_key"], "none reached"
        )
        failed = {
            "amount": command["amount"],
            "method": command["method"],
            "provider": provider,
            "idempotency_key": command["idempotency_key"],
            "decline_code": "provider_unavailable",
            "detail": str(error)[:200],
            "retryable": True,
        }
        return [reply(command, "ChargeFailed", failed)]
    if incoming.name != "RefundRequested":
        return []
    command = incoming.record
    provider = (ports.routes.get(incoming.return_id) or {}).get(
        command["idempotency_key"], "none reached"
    )
    answer = PspAnswer(False, decline_code="provider_unavailable", detail=str(error)[:200])
    name, record = result_event(command, answer, provider)
    record["retryable"] = True
    record["next_action"] = str(NextAction.RETRY)
    refund_metrics.provider_unavailable(str(command["method"]), provider)
    return [(name, record)]


async def keep_order_ledger(ports: RefundPorts, incoming: Incoming) -> list[Outbound]:
    """Reserve a return's share of its order, or give it back (keyed by order_ref)."""
    command = incoming.record
    order_ref = command["order_ref"]
    if incoming.key != order_ref.encode():
        # written under another key, the entry would have two owners
        raise MisroutedLedgerCommand(f"key {incoming.key!r} is not the order_ref {order_ref}")
    known = ports.order_ledger.get(order_ref)
    if incoming.name == "RefundReservationRequested":
        entry, answer = order_refund_ledger.reserve(known, incoming.return_id, command)
    else:
        entry, answer = order_refund_ledger.release(known, incoming.return_id, command)
    if entry != known:
        ports.order_ledger[order_ref] = entry
    log.debug(
        "order refund ledger",
        order_ref=order_ref,
        answer=answer.name,
        reserved_minor=order_refund_ledger.summary(entry)["reserved_minor"],
    )
    return [reply(command, answer.name, answer.body)]


async def order_refunds(ports: RefundPorts, request: HttpRequest, order_ref: str) -> HttpAnswer:
    """GET /orders/{order_ref}/refunds: an order's live and released returns."""
    entry = ports.order_ledger.get(order_ref)
    if not entry:
        return HttpAnswer(404, {"error": "not_found", "detail": f"no returns of {order_ref}"})
    return HttpAnswer(200, order_refund_ledger.summary(entry))


async def psp_webhook(ports: RefundPorts, request: HttpRequest) -> HttpAnswer:
    """POST /webhooks/psp: a provider's signed settlement webhook becomes RefundSettled or
    RefundFailed, its event id derived from the webhook (re-deliveries are one event)."""
    provider = provider_of(parse_json_object(request.body))
    secret = ports.partners.webhook_secrets.get(provider)
    if secret is None:
        raise ApiError(401, "unknown_provider", f"no webhook secret for {provider!r}")
    return await publish_signed_event(
        request,
        signature=PSP_SIGNATURE,
        secret=secret,
        now_s=ports.clock_s(),
        event_of=lambda body: webhook_event(body, SERVICE),
        publish=ports.publish,
        logged_as="provider webhook",
        provider=provider,
    )
