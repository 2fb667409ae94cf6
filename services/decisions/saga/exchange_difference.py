"""An exchange to another variant of the returned product, priced by the marketplace's
catalog (pure saga steps).

The front door lets a buyer exchange only to a variant of the returned product, with its
unit price from the catalog (ReturnRequested's `exchange_unit_price_minor`):

- the same price: the replacement is ordered, nothing moves;
- cheaper: the replacement is ordered, then the difference is refunded the way the return
  would have been (a refund of its own plan: one breakdown line per returned line, so
  settlement charges the seller the difference like any refunded price);
- dearer, the buyer having agreed to pay the difference (`pay_difference`): the buyer is
  charged first (ChargeRequested to the refund service, the provider's idempotency key
  `{return_id}-exchange-charge`; ChargeCaptured is booked by settlement), then the
  replacement is ordered. A declined charge refunds as planned instead (the exchange is
  off, recorded as a rule fired); a replacement out of stock after the charge goes to a
  person, who gives the charge back (a ticket).
"""

from __future__ import annotations

from typing import Any

from services.decisions.money import Money
from services.decisions.saga.commands import request_replacement, send_command
from services.decisions.saga.state import SagaState, Status, changed
from services.decisions.saga.step import Step, finish, return_currency, ticket_facts


def exchange_difference(state: SagaState) -> int:
    """What the variant costs more (+) or less (−) than the returned units, in minor units
    of the order's currency (0 without a catalog price)."""
    price = state.request.get("exchange_unit_price_minor")
    if price is None:
        return 0
    return sum(
        (int(price) - int(line["unit_price"]["amount_minor"])) * int(line["quantity_returned"])
        for line in state.request.get("lines") or ()
    )


def charge_key(return_id: str) -> str:
    return f"{return_id}-exchange-charge"


def request_charge(step: Step, state: SagaState) -> SagaState:
    """Charge the buyer the dearer variant's difference (sent again with the same key)."""
    amount = Money(exchange_difference(state), return_currency(state)).to_record()
    state = changed(state, status=Status.EXCHANGE_CHARGING)
    return send_command(
        step,
        state,
        Status.EXCHANGE_CHARGING,
        "ChargeRequested",
        {
            "amount": amount,
            "method": str(state.request.get("payment_method") or ""),
            "idempotency_key": charge_key(state.return_id),
            "order_ref": str(state.request.get("order_ref", "")),
            "buyer_id": str(state.request.get("buyer_id", "")),
            "reason": f"exchange to {state.request.get('exchange_sku')}: the price difference",
        },
        step.config.exchange_deadline_ms,
        "charge",
    )


def difference_plan(state: SagaState, planned: dict[str, Any]) -> dict[str, Any]:
    """The refund of a cheaper variant's difference: per returned line, (its price − the
    variant's) × units, paid by the method the return would have refunded by."""
    price = int(state.request["exchange_unit_price_minor"])
    currency = return_currency(state)
    breakdown = []
    for line in state.request["lines"]:
        units = int(line["quantity_returned"])
        unit = int(line["unit_price"]["amount_minor"])
        back = (unit - price) * units
        breakdown.append(
            {
                "line_id": str(line.get("order_line_id") or line["sku"]),
                "sku": line["sku"],
                "quantity": units,
                "currency": currency,
                "unit_price_minor": unit - price,
                "gross_minor": back,
                "discount_minor": 0,
                "goods_minor": back,
                "tax_minor": 0,
                "tax_included_minor": 0,
                "shipping_minor": 0,
                "return_shipping_minor": 0,
                "restocking_fee_minor": 0,
                "damage_deduction_minor": 0,
                "amount_minor": back,
            }
        )
    total = sum(line["amount_minor"] for line in breakdown)
    return {
        "amount": Money(total, currency).to_record(),
        "method": planned["method"],
        "lines": [
            {
                "sku": line["sku"],
                "quantity": line["quantity"],
                "amount": Money(line["amount_minor"], currency).to_record(),
            }
            for line in breakdown
        ],
        "breakdown": breakdown,
        "liable": "SELLER",  # the seller kept the dearer item and sends the cheaper one
        "paid_with": planned.get("paid_with"),
        "policy_version": planned.get("policy_version"),
        "deadline_days": planned.get("deadline_days"),
        "exchange_difference": True,
    }


def charge_captured(step: Step) -> SagaState | None:
    r = step.record
    if r["idempotency_key"] != charge_key(step.state.return_id):
        step.notes.append(f"answer for another charge ({r['idempotency_key']}) ignored")
        return None
    charge = {
        "amount": r["amount"],
        "provider": r["provider"],
        "provider_charge_id": r["provider_charge_id"],
        "captured_at": step.envelope["occurred_at"],
    }
    state = changed(
        step.state,
        request={**step.state.request, "exchange_charge": charge},
        timer={},
        status=Status.EXCHANGE_PENDING,
    )
    step.notes.append(
        f"the buyer paid the difference ({r['amount']['amount_minor']} "
        f"{r['amount']['currency']}): replacement {state.request['exchange_sku']} requested"
    )
    return request_replacement(step, state)


def out_of_stock_after_charge(step: Step, state: SagaState) -> SagaState:
    charge = state.request["exchange_charge"]
    return finish(
        step,
        state,
        Status.NEEDS_ATTENTION,
        "REFUND",
        f"replacement {state.request.get('exchange_sku')} out of stock after the buyer paid "
        f"{charge['amount']['amount_minor']} {charge['amount']['currency']}: give the charge "
        "back and refund the return",
        (
            "exchange-charged-out-of-stock",
            ticket_facts(state, provider_charge_id=charge["provider_charge_id"]),
        ),
    )
