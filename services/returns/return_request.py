"""A buyer's return request: validated from JSON, normalised, hashed (pure; no I/O).

The buyer names the order, the lines and how many, the reason and the photos:

{"order_ref": "ORD-1", "reason_code": "WRONG_SIZE",
 "lines": [{"order_line_id": "L1", "quantity": 1}],
 "buyer_notes": "", "photo_refs": [], "store_credit": false}

Optional: "pickup_address" (else the order's), "resolution": "EXCHANGE" with
"exchange_sku" (a variant of the returned product in the marketplace's catalog;
"pay_difference": true for a dearer one), "refund_account": {"holder", "number",
"bank_code"} (where a bank-transfer refund goes; without it the refund waits for the
buyer to give it). A line may name its
order line by "sku" instead of "order_line_id" when one line of the order has that sku.

Everything else that decides a refund comes from the marketplace's order
(`order_facts`): a body may still state buyer_id, seller_id, category, market,
delivered_at, payment_method, a line's sku, quantity_bought and unit_price, and the
`order` block (currency, discount_minor, shipping_fee_minor, tax_basis, tax_rate_bp,
lines) — each stated must agree with the order, else 422 naming it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.decisions.money import CURRENCY_EXPONENTS, MAX_ORDER_AMOUNT_MINOR
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
    exchange_unit_price_minor: int | None = None  # the variant's price (the catalog's)
    pay_difference: bool = False  # a dearer variant: the buyer pays the difference

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
            "exchange_unit_price_minor": self.exchange_unit_price_minor,
            "pay_difference": self.pay_difference,
            "refund_account": dict(self.refund_account) if self.refund_account else None,
        }


@dataclass(frozen=True)
class ClaimedLine:
    """A returned line as the body gives it: the line (by id, or by sku) and how many; the
    rest, when stated, must agree with the order."""

    quantity: int
    order_line_id: str | None = None
    sku: str | None = None
    quantity_bought: int | None = None
    unit_price_minor: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class ReturnClaim:
    """The buyer's request as the body gives it (order_facts makes it a ReturnRequest with
    the order's facts). Facts it states are None when absent."""

    order_ref: str
    reason_code: str
    lines: tuple[ClaimedLine, ...]
    buyer_notes: str = ""
    photo_refs: tuple[str, ...] = ()
    pickup_address: str | None = None
    store_credit_chosen: bool = False
    resolution: str = "REFUND"
    exchange_sku: str | None = None
    pay_difference: bool = False
    refund_account: tuple[tuple[str, str], ...] | None = None
    buyer_id: str | None = None
    seller_id: str | None = None
    category: str | None = None
    market: str | None = None
    delivered_at_ms: int | None = None
    delivered_on_day: bool = False  # stated as a date (compared by day), not a date-time
    payment_method: str | None = None
    order: OrderInput | None = None

    def fingerprint(self) -> str:
        """SHA-256 of the normalised body: equal bodies (in meaning) hash equal."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def iso_instant_ms(raw: str) -> int:
    """An ISO 8601 date (its midnight UTC) or date-time (UTC when it gives no offset) in
    ms since the epoch; ValueError when it is neither."""
    if len(raw) == 10:
        moment = datetime.combine(date.fromisoformat(raw), datetime.min.time(), tzinfo=UTC)
    else:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)  # integer arithmetic, no float


def _delivered_at(fields: Fields) -> int:
    raw = fields.data.get("delivered_at")
    if not isinstance(raw, str):
        fields.problem("delivered_at", "is required as an ISO 8601 date or date-time")
        return 0
    try:
        return iso_instant_ms(raw)
    except ValueError:
        fields.problem("delivered_at", f"{raw!r} is not an ISO 8601 date or date-time")
        return 0


def _line(fields: Fields, index: int, data: dict[str, Any]) -> ClaimedLine | None:
    line = fields.nested(f"lines[{index}]", data)
    before = len(fields.problems)
    order_line_id = line.text("order_line_id", required=False, max_len=64) or None
    stated_sku = order_line_id is None or data.get("sku") is not None  # stated: not blank
    sku = line.text("sku", required=stated_sku, max_len=64) or None
    quantity = line.integer("quantity", minimum=1, maximum=10_000)
    bought = line.integer("quantity_bought", minimum=1, maximum=10_000, required=False)
    price = data.get("unit_price")
    amount, currency = None, None
    if price is not None and not isinstance(price, dict):
        line.problem("unit_price", "must be {amount_minor, currency}")
    elif price is not None:
        money = line.nested("unit_price", price)
        amount = money.integer("amount_minor", minimum=0, maximum=MAX_ORDER_AMOUNT_MINOR)
        currency = money.text("currency", max_len=3)
        if currency and currency not in CURRENCY_EXPONENTS:
            money.problem("currency", f"{currency!r} is not a supported ISO 4217 code")
    if quantity and bought and quantity > bought:
        line.problem("quantity", f"returns {quantity} but only {bought} were bought")
    if len(fields.problems) > before or quantity is None:
        return None
    return ClaimedLine(quantity, order_line_id, sku, bought, amount, currency or None)


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
                line.integer("unit_price_minor", minimum=0, maximum=MAX_ORDER_AMOUNT_MINOR) or 0,
                line.integer("quantity", minimum=1, maximum=10_000) or 0,
                line.integer(
                    "tax_minor",
                    minimum=0,
                    maximum=MAX_ORDER_AMOUNT_MINOR,
                    required=False,
                    default=0,
                )
                or 0,
            )
        )
    if len({line.line_id for line in lines}) != len(lines):
        order.problem("lines", "line_id must be unique")
    amounts = {}
    for key in ("discount_minor", "shipping_fee_minor"):
        amounts[key] = order.integer(
            key, minimum=0, maximum=MAX_ORDER_AMOUNT_MINOR, required=False, default=0
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


def _stated_text(fields: Fields, key: str, max_len: int) -> str | None:
    """A fact the body may state: absent is None; stated, it must be a non-empty string."""
    if fields.data.get(key) is None:
        return None
    return fields.text(key, max_len=max_len) or None


def parse_return_claim(data: dict[str, Any]) -> ReturnClaim:
    """Raise ApiError(422) naming every invalid field, or return the buyer's claim (the
    order's facts complete it: order_facts.return_request)."""
    fields = Fields(data)
    order_ref = fields.text("order_ref", max_len=64)
    reason_code = fields.text("reason_code", max_len=64)
    buyer_id = _stated_text(fields, "buyer_id", 64)
    seller_id = _stated_text(fields, "seller_id", 64)
    category = _stated_text(fields, "category", 64)
    market = _stated_text(fields, "market", 8)
    payment_method = (
        fields.choice("payment_method", PAYMENT_METHODS)
        if data.get("payment_method") is not None
        else None
    )
    delivered_at = _delivered_at(fields) if data.get("delivered_at") is not None else None
    pickup_address = _stated_text(fields, "pickup_address", 500)
    buyer_notes = fields.text("buyer_notes", required=False, max_len=2000)
    photo_refs = fields.string_list("photo_refs")
    lines = [
        line
        for index, raw in enumerate(fields.objects("lines", max_items=MAX_LINES))
        if (line := _line(fields, index, raw)) is not None
    ]
    if len({line.currency for line in lines if line.currency}) > 1:
        fields.problem("lines", "all lines of one return must have the same currency")
    named = [(line.order_line_id, line.sku) for line in lines]
    if len(set(named)) != len(named):
        fields.problem("lines", "the same order line appears twice")
    order = _order(fields, data.get("order"))
    store_credit = data.get("store_credit", False)
    if not isinstance(store_credit, bool):
        fields.problem("store_credit", "must be true or false")
    resolution = data.get("resolution") or "REFUND"  # null and "" are the default
    if not isinstance(resolution, str) or resolution not in RESOLUTIONS:
        fields.problem("resolution", f"must be one of {', '.join(sorted(RESOLUTIONS))}")
        resolution = "REFUND"
    exchange_sku = fields.text("exchange_sku", required=resolution == "EXCHANGE", max_len=64)
    if resolution == "EXCHANGE" and store_credit is True:
        fields.problem("store_credit", "an exchange pays no money: leave store_credit out")
    pay_difference = data.get("pay_difference", False)
    if not isinstance(pay_difference, bool):
        fields.problem("pay_difference", "must be true or false")
    elif pay_difference and resolution != "EXCHANGE":
        fields.problem("pay_difference", "is for an exchange to a dearer variant only")
    account = None
    if data.get("refund_account") is not None:
        account = parse_bank_account(fields, "refund_account", data["refund_account"])
    if fields.problems:
        raise invalid(fields.problems)
    raw_delivered = data.get("delivered_at")
    return ReturnClaim(
        order_ref=order_ref,
        reason_code=reason_code.upper(),
        lines=tuple(lines),
        buyer_notes=buyer_notes,
        photo_refs=tuple(photo_refs),
        pickup_address=pickup_address,
        store_credit_chosen=store_credit is True,
        resolution=resolution,
        exchange_sku=(exchange_sku or None) if resolution == "EXCHANGE" else None,
        pay_difference=pay_difference is True,
        refund_account=tuple(account.items()) if account else None,
        buyer_id=buyer_id,
        seller_id=seller_id,
        category=category.lower() if category else None,
        market=market.upper() if market else None,
        delivered_at_ms=delivered_at,
        delivered_on_day=isinstance(raw_delivered, str) and len(raw_delivered) == 10,
        payment_method=payment_method,
        order=order,
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


def parse_cancellation(data: dict[str, Any], role: str) -> dict[str, str]:
    """`{"cancelled_by": "buyer"|"support", "reason": "..."}` (both optional); who cancels
    is the caller's role (`role`, from the token): a body naming another is 403."""
    fields = Fields(data)
    cancelled_by = fields.choice("cancelled_by", CANCELLERS, default=role)
    if not fields.problems and cancelled_by != role:
        raise ApiError(403, "not_your_role", f"a {role} cannot cancel as {cancelled_by}")
    reason = (
        fields.text("reason", required=False, max_len=500)
        or f"cancelled by {'the buyer' if role == 'buyer' else role}"
    )
    if fields.problems:
        raise invalid(fields.problems)
    return {"cancelled_by": cancelled_by, "reason": reason}


HOUR_MS = 3_600_000
PICKUP_LEAD_MS = HOUR_MS  # a new window starts at least this far ahead
PICKUP_WINDOW_MIN_MS, PICKUP_WINDOW_MAX_MS = HOUR_MS, 8 * HOUR_MS
PICKUP_AHEAD_MAX_MS = 14 * 24 * HOUR_MS


def _instant(fields: Fields, name: str) -> int | None:
    raw = fields.data.get(name)
    if not isinstance(raw, str) or len(raw) <= 10:
        fields.problem(name, "is required as an ISO 8601 date-time with its offset")
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        fields.problem(name, f"{raw[:40]!r} is not an ISO 8601 date-time")
        return None
    if moment.tzinfo is None:
        fields.problem(name, "needs its offset (e.g. Z or +01:00)")
        return None
    return (moment - EPOCH) // timedelta(milliseconds=1)


def parse_pickup_window(data: dict[str, Any], now_ms: int) -> tuple[int, int]:
    """`{"window_start": "2026-12-08T09:00:00Z", "window_end": "…T13:00:00Z"}`: a window
    starting 1 h to 14 days from now, 1 to 8 h long (epoch ms)."""
    fields = Fields(data)
    start, end = _instant(fields, "window_start"), _instant(fields, "window_end")
    if start is not None and not now_ms + PICKUP_LEAD_MS <= start <= now_ms + PICKUP_AHEAD_MAX_MS:
        fields.problem("window_start", "must be between 1 hour and 14 days from now")
    long_enough = start is not None and end is not None
    if long_enough and not start + PICKUP_WINDOW_MIN_MS <= end <= start + PICKUP_WINDOW_MAX_MS:
        fields.problem("window_end", "must be 1 to 8 hours after window_start")
    if fields.problems or start is None or end is None:
        raise invalid(fields.problems)
    return start, end


def parse_drop_off(data: dict[str, Any]) -> str:
    """`{"point_id": "DP-…"}`: the carrier's drop-off point the buyer takes the parcel to."""
    fields = Fields(data)
    point = fields.text("point_id", max_len=64)
    if fields.problems or point is None:
        raise invalid(fields.problems)
    return point


DISPUTE_REASONS = frozenset({"GRADE_WRONG", "DAMAGE_NOT_MINE", "ITEM_MATCHES_ORDER", "OTHER"})


def parse_dispute(data: dict[str, Any]) -> dict[str, Any]:
    """`{"reason": "GRADE_WRONG", "details": "…", "photo_refs": ["photo://…"]}`: why the
    buyer disputes how the return was decided (details up to 2000 characters, up to 10
    photos)."""
    fields = Fields(data)
    reason = fields.choice("reason", DISPUTE_REASONS)
    details = fields.text("details", required=False, max_len=2000)
    photos = fields.string_list("photo_refs", max_items=10, max_len=256)
    if fields.problems:
        raise invalid(fields.problems)
    return {"reason": reason, "details": details, "photo_refs": photos}
