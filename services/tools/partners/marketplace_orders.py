"""The marketplace's order system, in its double: orders placed and delivered, published to
`boomerang.marketplace.orders` (OrderPlaced / OrderDelivered, Avro single-object, keyed by
order_ref) before the HTTP answer, as a marketplace's order system would publish them.
Settlement reads the seller, the commission per line, the currencies and the rate locked
at order time from there (and, later, risk and the front door).

`POST /orders` places an order once per `order_ref` (the same body again: the same answer;
another body: 409); `POST /orders/{order_ref}/delivered` marks it delivered once (now, or
at the body's `delivered_at`, milliseconds: a test's order delivered weeks ago);
`GET /orders/{order_ref}` shows it. When the topic cannot be written the answer is 503
and nothing is remembered: the caller tries again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.decisions.event_ids import deterministic_event_id, envelope_of
from services.decisions.money import CURRENCY_EXPONENTS, MAX_ORDER_AMOUNT_MINOR
from services.decisions.settlement.fx import FxError, Rate
from services.eventing.avro_codec import AvroCodec
from services.eventing.event_publisher import EventPublisher, producer_settings
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import ORDERS
from services.tools.partners import http_support

MAX_LINES = 100
MAX_QUANTITY = 1000
PRODUCER = "marketplace"


@dataclass
class CustomerOrder:
    order: dict[str, Any]  # the Avro Order record
    request_fingerprint: str
    delivered_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.order, "delivered_at": self.delivered_at}


def order_record(payload: Mapping[str, Any], placed_at: int) -> dict[str, Any]:
    """The Order record of a POST /orders body; an ApiError (422) names a wrong field."""
    currency = _currency(payload, "currency")
    seller_currency = _currency(payload, "seller_currency")
    fx_rate = payload.get("fx_rate", "1" if currency == seller_currency else None)
    if not isinstance(fx_rate, str):
        raise http_support.invalid_field("fx_rate", 'must be a decimal string, e.g. "0.8563"')
    try:
        Rate.parse(currency, seller_currency, fx_rate)
    except FxError as exc:
        raise http_support.invalid_field("fx_rate", str(exc)) from exc
    market = http_support.text_field(payload, "market")
    if len(market) != 2 or not market.isalpha() or not market.isupper():
        raise http_support.invalid_field("market", "must be an ISO 3166 country code, e.g. DE")
    lines = payload.get("lines")
    if not isinstance(lines, list) or not 1 <= len(lines) <= MAX_LINES:
        raise http_support.invalid_field("lines", f"must be a list of 1 to {MAX_LINES} lines")
    return {
        "order_ref": http_support.text_field(payload, "order_ref"),
        "market": market,
        "buyer_id": http_support.text_field(payload, "buyer_id"),
        "seller_id": http_support.text_field(payload, "seller_id"),
        "currency": currency,
        "seller_currency": seller_currency,
        "fx_rate": fx_rate,
        "shipping_fee_minor": _minor(payload, "shipping_fee_minor", 0),
        "paid_with": _text_or(payload, "paid_with", "CARD"),
        "pickup_address": _text_or(payload, "pickup_address", ""),
        "tax_basis": _tax_basis(payload),
        "tax_rate_bp": http_support.whole_number_field(
            {"tax_rate_bp": payload.get("tax_rate_bp", 0)}, "tax_rate_bp", minimum=0, maximum=10_000
        ),
        "lines": [_line(line, n) for n, line in enumerate(lines)],
        "placed_at": placed_at,
    }


def _line(line: Any, n: int) -> dict[str, Any]:
    where = f"lines[{n}]"
    if not isinstance(line, dict):
        raise http_support.invalid_field(where, "must be an object")
    quantity = http_support.whole_number_field(line, "quantity", minimum=1, maximum=MAX_QUANTITY)
    unit_price = http_support.whole_number_field(
        line, "unit_price_minor", minimum=0, maximum=MAX_ORDER_AMOUNT_MINOR
    )
    discount = _minor(line, "discount_minor", 0)
    if discount > unit_price * quantity:
        raise http_support.invalid_field(f"{where}.discount_minor", "exceeds the line's price")
    serials = line.get("serials", [])
    if (
        not isinstance(serials, list)
        or len(serials) > quantity
        or not all(isinstance(s, str) and s for s in serials)
    ):
        raise http_support.invalid_field(
            f"{where}.serials", "must be a list of at most `quantity` non-empty strings"
        )
    return {
        "line_id": http_support.text_field(line, "line_id"),
        "sku": http_support.text_field(line, "sku"),
        "quantity": quantity,
        "unit_price_minor": unit_price,
        "discount_minor": discount,
        "commission_bps": http_support.whole_number_field(
            line, "commission_bps", minimum=0, maximum=10_000
        ),
        "serials": serials,
        "category": _text_or(line, "category", ""),
    }


def _tax_basis(payload: Mapping[str, Any]) -> str:
    basis = payload.get("tax_basis", "INCLUSIVE")
    if basis not in ("INCLUSIVE", "EXCLUSIVE"):
        raise http_support.invalid_field("tax_basis", "must be INCLUSIVE or EXCLUSIVE")
    return str(basis)


def _currency(payload: Mapping[str, Any], name: str) -> str:
    code = http_support.text_field(payload, name)
    if code not in CURRENCY_EXPONENTS:
        raise http_support.invalid_field(name, f"{code!r} is not a currency settled here")
    return code


def _minor(payload: Mapping[str, Any], name: str, default: int) -> int:
    if payload.get(name) is None:
        return default
    return http_support.whole_number_field(payload, name, minimum=0, maximum=MAX_ORDER_AMOUNT_MINOR)


def _text_or(payload: Mapping[str, Any], name: str, default: str) -> str:
    value = payload.get(name, default)
    if not isinstance(value, str) or len(value) > http_support.MAX_TEXT_LENGTH:
        raise http_support.invalid_field(name, "must be a string")
    return value


def order_event(name: str, order: Mapping[str, Any], at_ms: int) -> dict[str, Any]:
    """OrderPlaced or OrderDelivered with its envelope (no return yet: its return_id holds
    the order_ref, this topic's key; the event id derived from the order and the event,
    the same when published again)."""
    order_ref = order["order_ref"]
    event_id = deterministic_event_id(order_ref, "order", name)
    record: dict[str, Any] = {
        "envelope": envelope_of(name, order_ref, PRODUCER, event_id=event_id, occurred_at=at_ms),
        "order": dict(order),
    }
    if name == "OrderDelivered":
        record["delivered_at"] = at_ms
    return record


class OrderEvents:
    """The double's producer onto the orders topic (acks from all in-sync replicas,
    idempotent); not started without a bootstrap address."""

    def __init__(self, bootstrap: str | None) -> None:
        self.bootstrap = bootstrap
        self._publisher: EventPublisher | None = None

    async def start(self) -> None:
        if not self.bootstrap:
            return
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, **producer_settings())
        await producer.start()
        self._publisher = EventPublisher(producer, AvroCodec(SchemaCatalogue.load()))

    async def stop(self) -> None:
        if self._publisher is not None:
            await self._publisher.producer.stop()
            self._publisher = None

    async def publish(self, name: str, order: Mapping[str, Any], at_ms: int) -> None:
        """The order's event written and acknowledged, or an ApiError 503 (nothing was)."""
        record = order_event(name, order, at_ms)
        if self._publisher is None:
            raise http_support.ApiError(
                503, "orders_unavailable", "the order system has no Kafka (KAFKA_BOOTSTRAP_SERVERS)"
            )
        try:
            await self._publisher.publish(name, record, ORDERS.name)
        except (KafkaError, OSError, TimeoutError) as exc:  # the caller tries again
            raise http_support.ApiError(
                503, "orders_unavailable", f"the orders topic could not be written: {exc!r}"
            ) from exc
