"""A buyer's return request: validated from JSON, normalised, hashed (pure; no I/O).

{"order_ref": "ORD-1", "buyer_id": "B-1", "seller_id": "S-1", "category": "apparel",
 "market": "ID", "reason_code": "WRONG_SIZE", "delivered_at": "2026-11-20",
 "payment_method": "EWALLET", "pickup_address": "Jl. Sudirman 1, Jakarta",
 "lines": [{"sku": "TS-M", "quantity": 1, "quantity_bought": 2, "order_line_id": "L1",
            "unit_price": {"amount_minor": 149000, "currency": "IDR"}}],
 "buyer_notes": "", "photo_refs": [],
 "order": {"currency": "IDR", "discount_minor": 20000, "shipping_fee_minor": 15000,
           "tax_basis": "INCLUSIVE", "tax_rate_bp": 1100,
           "lines": [{"line_id": "L1", "sku": "TS-M", "unit_price_minor": 149000, "quantity": 2},
                     {"line_id": "L2", "sku": "CAP", "unit_price_minor": 59000, "quantity": 1}]},
 "store_credit": false}

Optional: "resolution": "EXCHANGE" with "exchange_sku" (a replacement of another variant
instead of money), "refund_account": {"holder", "number", "bank_code"} (where a bank-transfer
refund goes; without it the refund waits for the buyer to give it).

`order` (optional) is the whole order as paid: the refund shares its discounts and shipping
across all of its lines. Without it the refund is unit price × quantity of the returned lines.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.decisions.money import CURRENCY_EXPONENTS
from services.eventing.request_fields import ApiError, Fields, invalid
from services.returns.bank_account import parse_bank_account

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PAYMENT_METHODS = frozenset(
    {
        "CARD",
        "EWALLET",
        "BNPL",
        "DIRECT_DEBIT",
        "BANK_TRANSFER",
        "VIRTUAL_ACCOUNT",
        "COD",
        "STORE_CREDIT",
    }
)
MAX_LINES = 50
MAX_ORDER_LINES = 200
MAX_UNIT_PRICE_MINOR = 10**13


@dataclass(frozen=True)
class RequestLine:
    sku: str
    quantity: int
    quantity_bought: int
    unit_price_minor: int
    currency: str
    order_line_id: str | None = None


@dataclass(frozen=True)
class OrderLineInput:
    line_id: str
    sku: str
    unit_price_minor: int
    quantity: int
    tax_minor: int = 0


@dataclass(frozen=True)
class OrderInput:
    currency: str
    lines: tuple[OrderLineInput, ...]
    discount_minor: int = 0
    shipping_fee_minor: int = 0
    tax_basis: str = "INCLUSIVE"
    tax_rate_bp: int = 0

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["lines"] = [asdict(line) for line in self.lines]
        return record


@dataclass(frozen=True)
class ReturnRequest:
    order_ref: str
    buyer_id: str
    seller_id: str
    category: str
    market: str
    reason_code: str
    delivered_at_ms: int
    payment_method: str
    lines: tuple[RequestLine, ...]
    pickup_address: str = ""
    buyer_notes: str = ""
    photo_refs: tuple[str, ...] = ()
    order: OrderInput | None = None
    store_credit_chosen: bool = False
    resolution: str = "REFUND"  # or EXCHANGE
    exchange_sku: str | None = None
    refund_account: tuple[tuple[str, str], ...] | None = None  # holder, number, bank_code

    @property
    def currency(self) -> str:
        return self.lines[0].currency

    def fingerprint(self) -> str:
        """SHA-256 of the normalised request: equal bodies (in meaning) hash equal."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def event_fields(self) -> dict[str, Any]:
        """The ReturnRequested payload (without envelope and idempotency fields)."""
        return {
            "order_ref": self.order_ref,
            "buyer_id": self.buyer_id,
            "seller_id": self.seller_id,
            "category": self.category,
            "market": self.market,
            "reason_code": self.reason_code,
            "lines": [
                {
                    "order_line_id": line.order_line_id,
                    "sku": line.sku,
                    "quantity_returned": line.quantity,
                    "quantity_bought": line.quantity_bought,
                    "unit_price": {
                        "amount_minor": line.unit_price_minor,
                        "currency": line.currency,
                    },
                }
                for line in self.lines
            ],
            "delivered_at": self.delivered_at_ms,
            "payment_method": self.payment_method,
            "pickup_address": self.pickup_address,
            "buyer_notes": self.buyer_notes,
            "photo_refs": list(self.photo_refs),
            "order": self.order.to_record() if self.order else None,
            "store_credit_chosen": self.store_credit_chosen,
            "resolution": self.resolution,
            "exchange_sku": self.exchange_sku,
            "refund_account": dict(self.refund_account) if self.refund_account else None,
        }


def _delivered_at(fields: Fields) -> int:
    raw = fields.data.get("delivered_at")
    if not isinstance(raw, str):
        fields.problem("delivered_at", "is required as an ISO 8601 date or date-time")
        return 0
    try:
        if len(raw) == 10:
            moment = datetime.combine(date.fromisoformat(raw), datetime.min.time(), tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        fields.problem("delivered_at", f"{raw!r} is not an ISO 8601 date or date-time")
        return 0
    return (moment - EPOCH) // timedelta(milliseconds=1)  # integer arithmetic, no float


def _line(fields: Fields, index: int, data: dict[str, Any]) -> RequestLine | None:
    line = fields.nested(f"lines[{index}]", data)
    before = len(fields.problems)
    sku = line.text("sku", max_len=64)
    quantity = line.integer("quantity", minimum=1, maximum=10_000)
    bought = line.integer("quantity_bought", minimum=1, maximum=10_000)
    order_line_id = line.text("order_line_id", required=False, max_len=64) or None
    price = data.get("unit_price")
    amount, currency = None, ""
    if not isinstance(price, dict):
        line.problem("unit_price", "is required as {amount_minor, currency}")
    else:
        money = line.nested("unit_price", price)
        amount = money.integer("amount_minor", minimum=0, maximum=MAX_UNIT_PRICE_MINOR)
        currency = money.text("currency", max_len=3)
        if currency and currency not in CURRENCY_EXPONENTS:
            money.problem("currency", f"{currency!r} is not a supported ISO 4217 code")
    if quantity and bought and quantity > bought:
        line.problem("quantity", f"returns {quantity} but only {bought} were bought")
    if len(fields.problems) > before or quantity is None or bought is None or amount is None:
        return None
    return RequestLine(sku, quantity, bought, amount, currency, order_line_id)


TAX_BASES = frozenset({"INCLUSIVE", "EXCLUSIVE"})


def _order(fields: Fields, data: Any) -> OrderInput | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        fields.problem("order", "must be a JSON object")
        return None
    order = fields.nested("order", data)
    before = len(fields.problems)
    currency = order.text("currency", max_len=3)
    if currency and currency not in CURRENCY_EXPONENTS:
        order.problem("currency", f"{currency!r} is not a supported ISO 4217 code")
    lines = []
    for index, raw in enumerate(order.objects("lines", max_items=MAX_ORDER_LINES)):
        line = order.nested(f"lines[{index}]", raw)
        lines.append(
            OrderLineInput(
                line.text("line_id", max_len=64),
                line.text("sku", max_len=64),
                line.integer("unit_price_minor", minimum=0, maximum=MAX_UNIT_PRICE_MINOR) or 0,
                line.integer("quantity", minimum=1, maximum=10_000) or 0,
                line.integer(
                    "tax_minor", minimum=0, maximum=MAX_UNIT_PRICE_MINOR, required=False, default=0
                )
                or 0,
            )
        )
    if len({line.line_id for line in lines}) != len(lines):
        order.problem("lines", "line_id must be unique")
    amounts = {}
    for key in ("discount_minor", "shipping_fee_minor"):
        amounts[key] = order.integer(
            key, minimum=0, maximum=MAX_UNIT_PRICE_MINOR, required=False, default=0
        )
    tax_basis = order.choice("tax_basis", TAX_BASES, default="INCLUSIVE")
    tax_rate = order.integer("tax_rate_bp", minimum=0, maximum=10_000, required=False, default=0)
    goods = sum(line.unit_price_minor * line.quantity for line in lines)
    if (amounts["discount_minor"] or 0) > goods:
        order.problem("discount_minor", f"is more than the goods ({goods})")
    if len(fields.problems) > before:
        return None
    return OrderInput(
        currency,
        tuple(lines),
        amounts["discount_minor"] or 0,
        amounts["shipping_fee_minor"] or 0,
        tax_basis,
        tax_rate or 0,
    )


def _check_lines_against_order(fields: Fields, lines: list[RequestLine], order: OrderInput) -> None:
    by_id = {line.line_id: line for line in order.lines}
    if lines and lines[0].currency != order.currency:
        fields.problem(
            "order.currency", f"is {order.currency}; the lines are in {lines[0].currency}"
        )
    for index, line in enumerate(lines):
        where = f"lines[{index}]"
        ordered = by_id.get(line.order_line_id or "")
        if ordered is None:
            fields.problem(f"{where}.order_line_id", "must name a line of the order")
            continue
        if (line.sku, line.quantity_bought, line.unit_price_minor) != (
            ordered.sku,
            ordered.quantity,
            ordered.unit_price_minor,
        ):
            fields.problem(
                where,
                f"sku, quantity_bought and unit_price differ from order line {ordered.line_id}",
            )


def parse_return_request(data: dict[str, Any]) -> ReturnRequest:
    """Raise ApiError(422) naming every invalid field, or return the normalised request."""
    fields = Fields(data)
    order_ref = fields.text("order_ref", max_len=64)
    buyer_id = fields.text("buyer_id", max_len=64)
    seller_id = fields.text("seller_id", max_len=64)
    category = fields.text("category", max_len=64)
    market = fields.text("market", max_len=8)
    reason_code = fields.text("reason_code", max_len=64)
    payment_method = fields.choice("payment_method", PAYMENT_METHODS)
    delivered_at = _delivered_at(fields)
    pickup_address = fields.text("pickup_address", max_len=500)
    buyer_notes = fields.text("buyer_notes", required=False, max_len=2000)
    photo_refs = fields.string_list("photo_refs")
    lines = [
        line
        for index, raw in enumerate(fields.objects("lines", max_items=MAX_LINES))
        if (line := _line(fields, index, raw)) is not None
    ]
    if lines and len({line.currency for line in lines}) > 1:
        fields.problem("lines", "all lines of one return must have the same currency")
    skus = [(line.sku, line.order_line_id) for line in lines]
    if len(set(skus)) != len(skus):
        fields.problem("lines", "the same order line appears twice")
    order = _order(fields, data.get("order"))
    if order is not None:
        _check_lines_against_order(fields, lines, order)
    store_credit = data.get("store_credit", False)
    if not isinstance(store_credit, bool):
        fields.problem("store_credit", "must be true or false")
    resolution = str(data.get("resolution") or "REFUND")
    if resolution not in RESOLUTIONS:
        fields.problem("resolution", f"must be one of {', '.join(sorted(RESOLUTIONS))}")
    exchange_sku = fields.text("exchange_sku", required=resolution == "EXCHANGE", max_len=64)
    if resolution == "EXCHANGE" and store_credit is True:
        fields.problem("store_credit", "an exchange pays no money: leave store_credit out")
    account = None
    if data.get("refund_account") is not None:
        account = parse_bank_account(fields, "refund_account", data["refund_account"])
    if fields.problems:
        raise invalid(fields.problems)
    return ReturnRequest(
        order_ref=order_ref,
        buyer_id=buyer_id,
        seller_id=seller_id,
        category=category.lower(),
        market=market.upper(),
        reason_code=reason_code.upper(),
        delivered_at_ms=delivered_at,
        payment_method=payment_method,
        lines=tuple(lines),
        pickup_address=pickup_address,
        buyer_notes=buyer_notes,
        photo_refs=tuple(photo_refs),
        order=order,
        store_credit_chosen=store_credit is True,
        resolution=resolution,
        exchange_sku=(exchange_sku or None) if resolution == "EXCHANGE" else None,
        refund_account=tuple(account.items()) if account else None,
    )


# visible ASCII, inner spaces allowed (HTTP trims outer ones); the document's pattern
IDEMPOTENCY_KEY = re.compile(r"[!-~](?:[ -~]{0,126}[!-~])?")


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise ApiError(
            400,
            "bad_idempotency_key",
            "Idempotency-Key must be 1..128 visible ASCII characters (inner spaces allowed)",
        )
    return value


CANCELLERS = frozenset({"buyer", "support"})
RESOLUTIONS = frozenset({"REFUND", "EXCHANGE"})


def parse_refund_account(data: dict[str, Any]) -> dict[str, str]:
    """`{"holder": ..., "number": ..., "bank_code": ...}`: the buyer's bank account."""
    fields = Fields(data)
    account = parse_bank_account(fields, "refund_account", data)
    if fields.problems or account is None:
        raise invalid(fields.problems)
    return account


def parse_cancellation(data: dict[str, Any]) -> dict[str, str]:
    """`{"cancelled_by": "buyer"|"support", "reason": "..."}` (both optional)."""
    fields = Fields(data)
    cancelled_by = fields.choice("cancelled_by", CANCELLERS, default="buyer")
    reason = fields.text("reason", required=False, max_len=500) or "cancelled by the buyer"
    if fields.problems:
        raise invalid(fields.problems)
    return {"cancelled_by": cancelled_by, "reason": reason}
