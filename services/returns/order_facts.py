"""The facts that decide a return, from the marketplace's order system, never from the
buyer (pure; no I/O: `marketplace_orders` fetches the order).

A buyer names the order, the lines and quantities, the reason and the photos. Prices,
discounts, taxes, the delivery date, the category, the seller, the buyer and the payment
method are the order's. A body may still state any of them (older clients send them all):
each one stated must agree with the order, else 422 naming the body's field and the
order's value. The refund arithmetic reads the order's figures only.

The order's record is the one the marketplace publishes (Order.avsc) with `delivered_at`
(null until delivered): a record that breaks it is the order system's fault, not the
buyer's (`OrderRecordError`: the front door answers 503, try later).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from services.decisions.money import CURRENCY_EXPONENTS, MAX_ORDER_AMOUNT_MINOR
from services.eventing.request_fields import FieldProblem, invalid
from services.returns.return_request import (
    PAYMENT_METHODS,
    TAX_BASES,
    OrderInput,
    OrderLineInput,
    RequestLine,
    ReturnClaim,
    ReturnRequest,
)

LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class OrderRecordError(ValueError):
    """The order system answered a record this service cannot read."""


class OrderSystemUnavailable(Exception):
    """The order system gave no usable answer now; the request may be sent again."""


class OrderSource(Protocol):
    """Where the front door finds an order (marketplace_orders; a fake in tests)."""

    async def find(self, order_ref: str) -> OrderFacts | None:
        """The order's facts, None when the order system has no such order;
        OrderSystemUnavailable when it cannot say now."""
        ...


@dataclass(frozen=True)
class OrderedLine:
    line_id: str
    sku: str
    quantity: int
    unit_price_minor: int
    discount_minor: int
    category: str
    serials: tuple[str, ...]
    # the marketplace's catalog: the line's product and its variants (sku → unit price);
    # empty when the order system shows none (then no exchange is possible)
    product_id: str = ""
    variants: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class OrderFacts:
    order_ref: str
    market: str
    buyer_id: str
    seller_id: str
    currency: str
    paid_with: str
    pickup_address: str
    shipping_fee_minor: int
    tax_basis: str
    tax_rate_bp: int
    lines: tuple[OrderedLine, ...]
    delivered_at_ms: int | None

    def line(self, line_id: str | None, sku: str | None) -> OrderedLine | None:
        """The line a returned line names: by its id, else by its sku when one line has it."""
        if line_id is not None:
            return next((line for line in self.lines if line.line_id == line_id), None)
        found = [line for line in self.lines if line.sku == sku]
        return found[0] if len(found) == 1 else None

    @property
    def discount_minor(self) -> int:
        return sum(line.discount_minor for line in self.lines)


def _text(record: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = record.get(key, default)
    if not isinstance(value, str):
        raise OrderRecordError(f"{key} is not a string")
    return value


def _whole(
    record: Mapping[str, Any],
    key: str,
    default: int | None = None,
    maximum: int = MAX_ORDER_AMOUNT_MINOR,
) -> int:
    value = record.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise OrderRecordError(f"{key} is not a whole number from 0 to {maximum}")
    return value


def order_facts(record: Any) -> OrderFacts:
    """The order system's record read, or OrderRecordError saying what is wrong in it."""
    if not isinstance(record, Mapping):
        raise OrderRecordError("the order is not a JSON object")
    raw_lines = record.get("lines")
    if not isinstance(raw_lines, list) or not raw_lines:
        raise OrderRecordError("the order has no lines")
    lines = []
    for raw in raw_lines:
        if not isinstance(raw, Mapping):
            raise OrderRecordError("an order line is not an object")
        serials = raw.get("serials", [])
        if not isinstance(serials, list) or not all(isinstance(s, str) for s in serials):
            raise OrderRecordError("an order line's serials are not strings")
        lines.append(
            OrderedLine(
                _text(raw, "line_id"),
                _text(raw, "sku"),
                _whole(raw, "quantity"),
                _whole(raw, "unit_price_minor"),
                _whole(raw, "discount_minor", 0),
                _text(raw, "category", "").lower(),
                tuple(serials),
                _text(raw, "product_id", ""),
                _variants(raw.get("variants")),
            )
        )
    delivered = record.get("delivered_at")
    if delivered is not None:
        delivered = _whole(record, "delivered_at", maximum=LAST_MS)
    currency = _text(record, "currency")
    if currency not in CURRENCY_EXPONENTS:
        raise OrderRecordError(f"currency {currency!r} is not ISO 4217")
    tax_basis = _text(record, "tax_basis", "INCLUSIVE")
    if tax_basis not in TAX_BASES:
        raise OrderRecordError(f"tax_basis {tax_basis!r}")
    return OrderFacts(
        order_ref=_text(record, "order_ref"),
        market=_text(record, "market").upper(),
        buyer_id=_text(record, "buyer_id"),
        seller_id=_text(record, "seller_id"),
        currency=currency,
        paid_with=_text(record, "paid_with", "CARD"),
        pickup_address=_text(record, "pickup_address", ""),
        shipping_fee_minor=_whole(record, "shipping_fee_minor", 0),
        tax_basis=tax_basis,
        tax_rate_bp=_whole(record, "tax_rate_bp", 0),
        lines=tuple(lines),
        delivered_at_ms=delivered,
    )


def _variants(raw: Any) -> tuple[tuple[str, int], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(v, Mapping) for v in raw):
        raise OrderRecordError("an order line's variants are not a list of objects")
    return tuple((_text(v, "sku"), _whole(v, "unit_price_minor")) for v in raw)


def exchange_price(
    found: _Disagreements, claim: ReturnClaim, lines: list[RequestLine], facts: OrderFacts
) -> int | None:
    """An exchange's variant: of the returned lines' one product (the catalog's), its unit
    price; a dearer one only when the buyer agreed to pay the difference. None (with the
    problem noted) when it is not a variant, or not affordable as asked."""
    if claim.resolution != "EXCHANGE" or not claim.exchange_sku or not lines:
        return None
    ordered = [facts.line(line.order_line_id, line.sku) for line in lines]
    products = {line.product_id for line in ordered if line is not None}
    first = ordered[0]
    if first is None or len(products) != 1 or not first.variants:
        found.add("exchange_sku", "an exchange is for the variants of one product of the order")
        return None
    variants = dict(first.variants)
    price = variants.get(claim.exchange_sku)
    if price is None:
        offered = ", ".join(sorted(variants)[:10])
        found.add(
            "exchange_sku",
            f"not a variant of the returned product {first.product_id} (its variants: {offered})",
        )
        return None
    difference = sum((price - line.unit_price_minor) * line.quantity for line in lines)
    if difference > 0 and not claim.pay_difference:
        found.add(
            "exchange_sku",
            f"costs {difference} (minor units of {facts.currency}) more than the returned "
            "items: set pay_difference to pay it, or choose another variant",
        )
        return None
    return price


def _day(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms // 1000, UTC).date().isoformat()


class _Disagreements:
    """What the body states that the order does not say."""

    def __init__(self) -> None:
        self.problems: list[FieldProblem] = []

    def check(self, field: str, stated: Any, ordered: Any, shown: Any = None) -> None:
        if stated is not None and stated != ordered:
            self.problems.append(
                FieldProblem(field, f"differs from the order ({shown if shown else ordered})")
            )

    def add(self, field: str, problem: str) -> None:
        self.problems.append(FieldProblem(field, problem))


def _check_order_block(found: _Disagreements, stated: OrderInput, facts: OrderFacts) -> None:
    found.check("order.currency", stated.currency, facts.currency)
    found.check("order.discount_minor", stated.discount_minor, facts.discount_minor)
    found.check("order.shipping_fee_minor", stated.shipping_fee_minor, facts.shipping_fee_minor)
    found.check("order.tax_basis", stated.tax_basis, facts.tax_basis)
    found.check("order.tax_rate_bp", stated.tax_rate_bp, facts.tax_rate_bp)
    for index, line in enumerate(stated.lines):
        ordered = facts.line(line.line_id, None)
        where = f"order.lines[{index}]"
        if ordered is None:
            found.add(f"{where}.line_id", f"the order has no line {line.line_id}")
            continue
        found.check(f"{where}.sku", line.sku, ordered.sku)
        found.check(f"{where}.unit_price_minor", line.unit_price_minor, ordered.unit_price_minor)
        found.check(f"{where}.quantity", line.quantity, ordered.quantity)


def return_request(claim: ReturnClaim, facts: OrderFacts) -> ReturnRequest:
    """The request the policy decides on, from the claim's choices and the order's facts;
    ApiError 422 naming every field that disagrees with the order (or a line it lacks)."""
    found = _Disagreements()
    if facts.delivered_at_ms is None:
        found.add("order_ref", "the order is not delivered yet: nothing to return")
    if facts.paid_with not in PAYMENT_METHODS:
        found.add("order_ref", f"the order was paid with {facts.paid_with}, not refundable here")
    found.check("buyer_id", claim.buyer_id, facts.buyer_id, "another buyer")
    found.check("seller_id", claim.seller_id, facts.seller_id)
    found.check("market", claim.market, facts.market)
    found.check("payment_method", claim.payment_method, facts.paid_with)
    if claim.delivered_at_ms is not None and facts.delivered_at_ms is not None:
        if claim.delivered_on_day:
            found.check("delivered_at", _day(claim.delivered_at_ms), _day(facts.delivered_at_ms))
        else:
            shown = datetime.fromtimestamp(facts.delivered_at_ms / 1000, UTC).isoformat()
            found.check("delivered_at", claim.delivered_at_ms, facts.delivered_at_ms, shown)
    lines: list[RequestLine] = []
    categories: set[str] = set()
    for index, stated in enumerate(claim.lines):
        where = f"lines[{index}]"
        ordered = facts.line(stated.order_line_id, stated.sku)
        if ordered is None:
            name = "order_line_id" if stated.order_line_id is not None else "sku"
            found.add(f"{where}.{name}", "names no line of the order (or more than one)")
            continue
        found.check(f"{where}.sku", stated.sku, ordered.sku)
        found.check(f"{where}.quantity_bought", stated.quantity_bought, ordered.quantity)
        found.check(
            f"{where}.unit_price.amount_minor", stated.unit_price_minor, ordered.unit_price_minor
        )
        found.check(f"{where}.unit_price.currency", stated.currency, facts.currency)
        if stated.quantity > ordered.quantity:
            found.add(
                f"{where}.quantity", f"returns {stated.quantity} of {ordered.quantity} bought"
            )
        categories.add(ordered.category)
        lines.append(
            RequestLine(
                ordered.sku,
                stated.quantity,
                ordered.quantity,
                ordered.unit_price_minor,
                facts.currency,
                ordered.line_id,
            )
        )
    if len({line.order_line_id for line in lines}) != len(lines):
        found.add("lines", "the same order line appears twice")
    category = min(categories) if categories else ""
    if len(categories) > 1:
        found.add("lines", "lines of different categories are returned separately")
    if categories:  # the lines found say which (none found: those lines are the problem)
        found.check("category", claim.category, category)
    if claim.order is not None:
        _check_order_block(found, claim.order, facts)
    variant_price = exchange_price(found, claim, lines, facts)
    if found.problems:
        raise invalid(found.problems)
    return ReturnRequest(
        order_ref=facts.order_ref,
        buyer_id=facts.buyer_id,
        seller_id=facts.seller_id,
        category=category,
        market=facts.market,
        reason_code=claim.reason_code,
        delivered_at_ms=facts.delivered_at_ms or 0,
        payment_method=facts.paid_with,
        lines=tuple(lines),
        pickup_address=claim.pickup_address or facts.pickup_address,
        buyer_notes=claim.buyer_notes,
        photo_refs=claim.photo_refs,
        order=OrderInput(
            facts.currency,
            tuple(
                OrderLineInput(line.line_id, line.sku, line.unit_price_minor, line.quantity)
                for line in facts.lines
            ),
            facts.discount_minor,
            facts.shipping_fee_minor,
            facts.tax_basis,
            facts.tax_rate_bp,
        ),
        store_credit_chosen=claim.store_credit_chosen,
        resolution=claim.resolution,
        exchange_sku=claim.exchange_sku,
        exchange_unit_price_minor=variant_price,
        pay_difference=claim.pay_difference and variant_price is not None,
        refund_account=claim.refund_account,
    )
