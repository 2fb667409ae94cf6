"""A completed return and its order, as what settlement charges (pure): the ReturnCompleted
record (liable party, the refund's breakdown per line) and the order (seller, currencies,
the rate locked at order time, commission per line) → a ReturnToSettle.

Per breakdown line, what the buyer was charged is read back from what was refunded:
`item_price` = amount + return shipping + restocking fee + damage deduction − original
shipping (the goods after discounts, with the tax refunded on them), so the charges' refund
is exactly the sum of the lines' `amount_minor`. A damage deduction is kept from the buyer
like a restocking fee.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.decisions.refunds.order_model import Liable
from services.decisions.settlement.fx import FxError, Rate
from services.decisions.settlement.journal import LedgerError
from services.decisions.settlement.return_postings import (
    DecidedDispute,
    ReturnCharges,
    ReturnedLine,
    ReturnToSettle,
    SoldBy,
)


class NotSettleable(ValueError):
    """A completion settlement cannot charge anyone for (the reason says why)."""


def charges_of(
    currency: str, breakdown: Sequence[Mapping[str, Any]], order: Mapping[str, Any]
) -> ReturnCharges:
    commission = {line["line_id"]: line["commission_bps"] for line in order["lines"]}
    by_sku = {line["sku"]: line["commission_bps"] for line in order["lines"]}
    lines, shipping, kept, return_shipping = [], 0, 0, 0
    for line in breakdown:
        if line["currency"] != currency:
            raise NotSettleable(f"line {line['line_id']} is in {line['currency']}, not {currency}")
        bps = commission.get(line["line_id"], by_sku.get(line["sku"]))
        if bps is None:
            raise NotSettleable(f"line {line['line_id']} ({line['sku']}) is not in the order")
        fees = line["restocking_fee_minor"] + line["damage_deduction_minor"]
        item_price = (
            line["amount_minor"] + line["return_shipping_minor"] + fees - line["shipping_minor"]
        )
        lines.append(ReturnedLine(line["sku"], item_price, bps))
        shipping += line["shipping_minor"]
        kept += fees
        return_shipping += line["return_shipping_minor"]
    try:
        return ReturnCharges(currency, tuple(lines), shipping, kept, return_shipping)
    except LedgerError as exc:
        raise NotSettleable(str(exc)) from exc


def sold_by_of(order: Mapping[str, Any], currency: str) -> SoldBy:
    """The order's seller, their currency and the rate locked on the order from `currency`
    (FxError or LedgerError when they do not fit)."""
    rate = Rate.parse(currency, order["seller_currency"], order["fx_rate"])
    return SoldBy(order["seller_id"], order["seller_currency"], rate)


def return_to_settle(
    completed: Mapping[str, Any], order: Mapping[str, Any], carrier_id: str | None = None
) -> ReturnToSettle:
    """What ReturnCompleted (v2) and its order (OrderPlaced's `order`) charge; NotSettleable
    when they cannot be settled (no liable party, no breakdown, another currency)."""
    return_id = completed["envelope"]["return_id"]
    liable = completed.get("liable")
    if liable not in Liable.__members__:
        raise NotSettleable(f"{return_id}: no liable party on the completion ({liable!r})")
    refunded = completed.get("refunded")
    breakdown = completed.get("breakdown") or []
    if refunded is None or not breakdown:
        raise NotSettleable(f"{return_id}: nothing was refunded (an exchange, or before v2)")
    currency = refunded["currency"]
    if currency != order["currency"]:
        raise NotSettleable(f"{return_id}: refunded in {currency}, order in {order['currency']}")
    try:
        charges = charges_of(currency, breakdown, order)
        settled = ReturnToSettle(
            return_id,
            order["order_ref"],
            Liable(liable),
            charges,
            sold_by_of(order, currency),
            carrier_id=carrier_id if liable == Liable.CARRIER else None,
            market=str(order.get("market", "")),
        )
    except (FxError, LedgerError) as exc:
        raise NotSettleable(f"{return_id}: {exc}") from exc
    if charges.refunded != refunded["amount_minor"]:
        raise NotSettleable(
            f"{return_id}: the breakdown refunds {charges.refunded}, "
            f"the completion says {refunded['amount_minor']}"
        )
    return settled


def decided_dispute(decided: Mapping[str, Any], order: Mapping[str, Any]) -> DecidedDispute:
    """What a DisputeDecided that refunded more and its order charge; NotSettleable when
    they cannot be settled (no refund, no payer, another currency)."""
    return_id = decided["envelope"]["return_id"]
    refund = decided.get("refund")
    if not refund:
        raise NotSettleable(f"{return_id}: the dispute refunded nothing")
    liable = decided.get("liable")
    if liable not in Liable.__members__:
        raise NotSettleable(f"{return_id}: no liable party on the dispute ({liable!r})")
    currency = refund["currency"]
    if currency != order["currency"]:
        raise NotSettleable(f"{return_id}: refunded in {currency}, order in {order['currency']}")
    try:
        return DecidedDispute(
            return_id,
            str(decided["dispute_id"]),
            refund["amount_minor"],
            currency,
            Liable(liable),
            order["order_ref"],
            sold_by_of(order, currency),
            carrier_id=decided.get("carrier_id") if liable == Liable.CARRIER else None,
            reinspected=decided.get("decided_by") == "reinspection",
            market=str(order.get("market", "")),
        )
    except (FxError, LedgerError) as exc:
        raise NotSettleable(f"{return_id}: {exc}") from exc
