"""Marketplace order-system double: a real local HTTP server that places replacement orders
and, as the marketplace's order system, publishes customer orders placed and delivered to
Kafka (`POST /orders`, services/tools/partners/marketplace_orders.py; needs
KAFKA_BOOTSTRAP_SERVERS, else those answer 503).

Buyers and support agents sign in here: `POST /buyers/{id}/tokens` and
`POST /support-agents/{id}/tokens` answer an RS256 bearer token (buyer_token_issuer.py;
the body may backdate the sign-in), whose key the front door reads from
`GET /.well-known/jwks.json` (MARKETPLACE_SIGNING_KEY_FILE keeps it across restarts).

An exchange ends with a replacement order for another variant. `POST /replacement-orders`
(with an `Idempotency-Key`) places one if the sku has stock, or answers 409 out_of_stock;
either answer is remembered for its key, so a retry never places a second order (and a
retry after an out-of-stock answer gets that answer again). Stock per sku comes from
`MARKETPLACE_STOCK` (JSON sku → units) and `MARKETPLACE_DEFAULT_STOCK` for the rest, or
`POST /admin/stock` at run time. Variants and their prices: the catalog
(marketplace_catalog.py; `GET /orders/{order_ref}` shows each line's product and variants).
`MARKETPLACE_LEDGER_FILE` keeps orders and stock changes
across restarts (JSON lines). Faults as the other doubles (`MARKETPLACE_FAULTS`).

    python -m services.tools.partners.marketplace_server
"""

from __future__ import annotations

import json
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from services.eventing.keyed_locks import KeyedLocks
from services.eventing.log_setup import get_logger
from services.settlement.seller_tokens import issue_seller_token
from services.tools.partners import http_support, partner_double
from services.tools.partners.buyer_token_issuer import BuyerTokenIssuer, signing_key
from services.tools.partners.fault_injection import FaultPlan
from services.tools.partners.json_lines_ledger import JsonLinesLedger
from services.tools.partners.marketplace_catalog import Catalog, parse_catalog
from services.tools.partners.marketplace_orders import (
    CustomerOrder,
    OrderEvents,
    order_record,
)

SERVICE_NAME = "marketplace"
PLACED = "placed"
OUT_OF_STOCK = "out_of_stock"
MAX_QUANTITY = 1000
MAX_SUBJECT_LEN = 64

log = get_logger(__name__)


@dataclass(frozen=True)
class MarketplaceSettings:
    host: str = "127.0.0.1"
    port: int = 8093
    ledger_file: Path | None = None
    stock: Mapping[str, int] = field(default_factory=dict)
    default_stock: int = 100
    faults: FaultPlan = field(default_factory=FaultPlan)
    kafka_bootstrap: str | None = None  # where customer orders are published
    seller_token_secret: str = ""  # signs the sellers' statement tokens (shared with settlement)
    seller_token_days: int = 30
    # the RSA key buyers' tokens are signed with (PEM; written there when missing, so
    # tokens outlive a restart); a new key each start without one
    signing_key_file: Path | None = None
    catalog: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MarketplaceSettings:
        """Settings from `MARKETPLACE_*` variables; ValueError names the variable that is wrong."""
        defaults = cls()
        return cls(
            host=env.get("MARKETPLACE_HOST") or defaults.host,
            port=http_support.env_int(env, "MARKETPLACE_PORT", defaults.port, minimum=0),
            ledger_file=http_support.env_path(env, "MARKETPLACE_LEDGER_FILE"),
            stock=_stock_levels(env.get("MARKETPLACE_STOCK") or "{}", "MARKETPLACE_STOCK"),
            default_stock=http_support.env_int(
                env, "MARKETPLACE_DEFAULT_STOCK", defaults.default_stock, minimum=0
            ),
            faults=partner_double.faults_from_env(FaultPlan, env, "MARKETPLACE_FAULTS"),
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            seller_token_secret=env.get("SELLER_TOKEN_SECRET", ""),
            seller_token_days=http_support.env_int(
                env, "SELLER_TOKEN_DAYS", defaults.seller_token_days, minimum=1
            ),
            signing_key_file=http_support.env_path(env, "MARKETPLACE_SIGNING_KEY_FILE"),
            catalog=parse_catalog(env.get("MARKETPLACE_CATALOG") or "{}", "MARKETPLACE_CATALOG"),
        )


def _stock_levels(text: str, name: str) -> dict[str, int]:
    try:
        levels = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{name} is not JSON: {exc}") from exc
    if not isinstance(levels, dict) or not all(
        isinstance(units, int) and not isinstance(units, bool) and units >= 0
        for units in levels.values()
    ):
        raise ValueError(f"{name} must be a JSON object of sku → units (whole numbers ≥ 0)")
    return {str(sku): units for sku, units in levels.items()}


@dataclass(frozen=True)
class ReplacementRequest:
    return_id: str
    order_ref: str
    buyer_id: str
    sku: str
    quantity: int
    ship_to: str


@dataclass
class ReplacementOrder:
    replacement_order_id: str
    idempotency_key: str
    request_fingerprint: str
    return_id: str
    order_ref: str
    buyer_id: str
    sku: str
    quantity: int
    ship_to: str
    status: str  # placed | out_of_stock
    available: int  # units left after placing, or on hand when out of stock
    created_at: int

    def to_json(self) -> dict[str, Any]:
        public = asdict(self)
        del public["request_fingerprint"]
        return public


class MarketplaceDouble(partner_double.PartnerDouble[FaultPlan, ReplacementOrder]):
    """State and handlers of one marketplace double; everything runs on one event loop."""

    def __init__(self, settings: MarketplaceSettings) -> None:
        super().__init__(settings.faults, partner="marketplace")
        self.settings = settings
        self.orders: dict[str, ReplacementOrder] = {}
        self.stock: dict[str, int] = dict(settings.stock)
        self.customer_orders: dict[str, CustomerOrder] = {}
        self.order_events = OrderEvents(settings.kafka_bootstrap)
        self._order_locks = KeyedLocks()
        self._ledger = JsonLinesLedger(settings.ledger_file)
        self.sign_in = BuyerTokenIssuer(signing_key(settings.signing_key_file))
        self.catalog = Catalog(settings.catalog)

    async def lifespan(self, _app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: replay the ledger file and keep it open while serving."""
        self._ledger.replay(self._replay)
        self._ledger.open()
        await self.order_events.start()
        log.info("marketplace double ready", port=self.settings.port, orders=len(self.orders))
        try:
            yield
        finally:
            await self.order_events.stop()
            self._ledger.close()

    # --- customer orders (the order system) ------------------------------------------------

    @partner_double.route("POST", "/orders")
    async def place_customer_order(self, request: web.Request) -> web.Response:
        """Once per order_ref: published (OrderPlaced), then remembered and answered 201; the
        same body again 200 (replayed), another body 409."""
        await self.inject_faults()
        payload = await http_support.json_object(request)
        order = order_record(payload, http_support.now_ms())
        fingerprint = http_support.request_fingerprint({**order, "placed_at": 0})
        async with self._order_locks.holding(order["order_ref"]):
            known = self.customer_orders.get(order["order_ref"])
            if known is not None:
                if known.request_fingerprint != fingerprint:
                    raise http_support.ApiError(
                        409, "order_exists", f"order {order['order_ref']} exists with other data"
                    )
                return http_support.creation_answer(known.to_json(), created=False)
            await self.order_events.publish("OrderPlaced", order, order["placed_at"])
            placed = CustomerOrder(order, fingerprint)
            self.customer_orders[order["order_ref"]] = placed
            entry = {"op": "customer_order", "order": order, "fingerprint": fingerprint}
            self._ledger.append(entry)
        log.info("order placed", order_ref=order["order_ref"], seller_id=order["seller_id"])
        return http_support.creation_answer(placed.to_json(), created=True)

    @partner_double.route("POST", "/orders/{order_ref}/delivered")
    async def deliver_customer_order(self, request: web.Request) -> web.Response:
        order_ref = request.match_info["order_ref"]
        known = self._customer_order(order_ref)
        async with self._order_locks.holding(order_ref):
            if known.delivered_at is not None:
                return http_support.creation_answer(known.to_json(), created=False)
            at = await _delivery_time(request)
            await self.order_events.publish("OrderDelivered", known.order, at)
            known.delivered_at = at
            delivered = {"op": "customer_order_delivered", "order_ref": order_ref, "at": at}
            self._ledger.append(delivered)
        return http_support.creation_answer(known.to_json(), created=True)

    @partner_double.route("GET", "/orders/{order_ref}")
    async def get_customer_order(self, request: web.Request) -> web.Response:
        order_ref = request.match_info["order_ref"]
        known = self._customer_order(order_ref)
        shown = known.to_json()
        shown["lines"] = [self.catalog.line_with_variants(line) for line in shown["lines"]]
        return web.json_response(shown)

    def _customer_order(self, order_ref: str) -> CustomerOrder:
        known = self.customer_orders.get(order_ref)
        if known is None:
            raise http_support.ApiError(404, "not_found", f"no order {order_ref}")
        return known

    # --- sellers' access to their settlement statements -----------------------------------

    @partner_double.route("POST", "/sellers/{seller_id}/tokens")
    async def issue_seller_token(self, request: web.Request) -> web.Response:
        """A token the seller reads its own settlement statements with (signed with
        SELLER_TOKEN_SECRET, which settlement shares; 503 when none is set)."""
        seller_id = request.match_info["seller_id"]
        secret = self.settings.seller_token_secret
        if not secret:
            raise http_support.ApiError(
                503, "no_token_secret", "SELLER_TOKEN_SECRET is not set: no tokens are issued"
            )
        expires = http_support.now_ms() + self.settings.seller_token_days * 86_400_000
        token = issue_seller_token(secret, seller_id, expires)
        return web.json_response(
            {"seller_id": seller_id, "token": token, "expires_at": expires}, status=201
        )

    # --- buyers' and support agents' sign-in (the front door checks their tokens) ----------

    @partner_double.route("GET", "/.well-known/jwks.json")
    async def signing_keys(self, _request: web.Request) -> web.Response:
        return web.json_response(self.sign_in.jwks())

    @partner_double.route("POST", "/buyers/{buyer_id}/tokens")
    async def sign_in_buyer(self, request: web.Request) -> web.Response:
        """A buyer signs in: their bearer token. The body may backdate the sign-in
        (`signed_in_at`, ms; not in the future) and set the lifetime (`ttl_s`)."""
        return await self._token(request, request.match_info["buyer_id"], "buyer")

    @partner_double.route("POST", "/support-agents/{agent_id}/tokens")
    async def sign_in_agent(self, request: web.Request) -> web.Response:
        return await self._token(request, request.match_info["agent_id"], "support")

    async def _token(self, request: web.Request, subject: str, role: str) -> web.Response:
        if not 0 < len(subject) <= MAX_SUBJECT_LEN:
            raise http_support.ApiError(422, "invalid_subject", "an id of 1 to 64 characters")
        now = http_support.now_ms()
        payload = await http_support.json_object(request, empty_is_object=True)
        signed_in_at = now
        if payload.get("signed_in_at") is not None:
            signed_in_at = http_support.whole_number_field(
                payload, "signed_in_at", minimum=0, maximum=now
            )
        ttl_s = 3600
        if payload.get("ttl_s") is not None:
            ttl_s = http_support.whole_number_field(payload, "ttl_s", minimum=1, maximum=86_400)
        token = self.sign_in.issue(subject, role, signed_in_at // 1000, ttl_s, now // 1000)
        answer = {
            "subject": subject,
            "role": role,
            "token": token,
            "signed_in_at": signed_in_at // 1000 * 1000,
            "expires_at": (now // 1000 + ttl_s) * 1000,
        }
        return web.json_response(answer, status=201)

    # --- replacement orders ----------------------------------------------------------------

    @partner_double.route("POST", "/replacement-orders")
    async def create_order(self, request: web.Request) -> web.Response:
        await self.inject_faults()
        order, created = await self.keys.create_once(request, _replacement_request, self._place)
        log.info(
            "replacement order answered",
            replacement_order_id=order.replacement_order_id,
            status=order.status,
            sku=order.sku,
            replayed=not created,
        )
        if created:
            self.ghost_if_planned("replacement order")
        refused = None
        if order.status == OUT_OF_STOCK:
            detail = f"{order.sku}: {order.available} on hand, {order.quantity} wanted"
            refused = http_support.ApiError(409, OUT_OF_STOCK, detail)
        return http_support.creation_answer(order.to_json(), created=created, refused=refused)

    @partner_double.route("GET", "/replacement-orders/stats")
    async def stats(self, _request: web.Request) -> web.Response:
        statuses = Counter(order.status for order in self.orders.values())
        per_return = Counter(o.return_id for o in self.orders.values() if o.status == PLACED)
        return web.json_response(
            {
                "placed": statuses[PLACED],
                "out_of_stock": statuses[OUT_OF_STOCK],
                "duplicates": sum(1 for n in per_return.values() if n > 1),
            }
        )

    @partner_double.route("GET", "/replacement-orders")
    async def list_orders(self, request: web.Request) -> web.Response:
        listed = http_support.filter_by_return_id(request, self.orders.values())
        return web.json_response({"replacement_orders": [o.to_json() for o in listed]})

    @partner_double.route("GET", "/replacement-orders/{order_id}")
    async def get_order(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        order = http_support.found(request, self.orders, order_id, "no such replacement order")
        return web.json_response(order.to_json())

    @partner_double.route("GET", "/stock/{sku}")
    async def get_stock(self, request: web.Request) -> web.Response:
        sku = request.match_info["sku"]
        return web.json_response({"sku": sku, "available": self._on_hand(sku)})

    # --- admin -----------------------------------------------------------------------------

    @partner_double.route("POST", "/admin/stock")
    async def set_stock(self, request: web.Request) -> web.Response:
        try:
            levels = _stock_levels(await request.text() or "{}", "body")
        except ValueError as exc:
            raise http_support.ApiError(400, "invalid_stock", str(exc)) from exc
        self.stock.update(levels)
        self._ledger.append({"op": "stock", "levels": levels})
        log.info("stock set", levels=levels)
        return web.json_response({"stock": levels})

    @partner_double.route("POST", "/admin/catalog")
    async def add_products(self, request: web.Request) -> web.Response:
        """Products and their variants' prices (`{"products": {id: {sku: price}}}`)."""
        payload = await http_support.json_object(request)
        try:
            products = parse_catalog(json.dumps(payload.get("products", {})), "products")
        except ValueError as exc:
            raise http_support.ApiError(400, "invalid_catalog", str(exc)) from exc
        self.catalog.add(products)
        self._ledger.append({"op": "catalog", "products": products})
        return web.json_response({"products": products})

    @partner_double.route("POST", "/admin/reset")
    async def reset(self, _request: web.Request) -> web.Response:
        self._forget_all()
        self._ledger.append({"op": "reset"})
        return web.json_response({"status": "reset"})

    # --- state -----------------------------------------------------------------------------

    def _on_hand(self, sku: str) -> int:
        return self.stock.get(sku, self.settings.default_stock)

    def _place(self, wanted: ReplacementRequest, key: str, fingerprint: str) -> ReplacementOrder:
        on_hand = self._on_hand(wanted.sku)
        placed = on_hand >= wanted.quantity
        if placed:
            self.stock[wanted.sku] = on_hand - wanted.quantity
        order = ReplacementOrder(
            replacement_order_id=f"ro_{uuid.uuid4().hex}",
            idempotency_key=key,
            request_fingerprint=fingerprint,
            return_id=wanted.return_id,
            order_ref=wanted.order_ref,
            buyer_id=wanted.buyer_id,
            sku=wanted.sku,
            quantity=wanted.quantity,
            ship_to=wanted.ship_to,
            status=PLACED if placed else OUT_OF_STOCK,
            available=self.stock.get(wanted.sku, on_hand),
            created_at=http_support.now_ms(),
        )
        self._remember(order)
        self._ledger.append({"op": "order", "order": asdict(order)})
        return order

    def _remember(self, order: ReplacementOrder) -> None:
        self.orders[order.replacement_order_id] = order
        self.keys.records[order.idempotency_key] = order

    def _forget_all(self) -> None:
        self.orders.clear()
        self.customer_orders.clear()
        self.keys.records.clear()
        self.stock = dict(self.settings.stock)

    def _replay(self, entry: dict[str, Any]) -> None:
        """One ledger line: an order (placed ones take their units again), stock set, reset."""
        if entry["op"] == "customer_order":
            order = entry["order"]
            self.customer_orders[order["order_ref"]] = CustomerOrder(order, entry["fingerprint"])
        elif entry["op"] == "customer_order_delivered":
            self.customer_orders[entry["order_ref"]].delivered_at = entry["at"]
        elif entry["op"] == "reset":
            self._forget_all()
        elif entry["op"] == "stock":
            self.stock.update(entry["levels"])
        elif entry["op"] == "catalog":
            self.catalog.add(entry["products"])
        else:
            order = ReplacementOrder(**entry["order"])
            self._remember(order)
            if order.status == PLACED:
                self.stock[order.sku] = self._on_hand(order.sku) - order.quantity


async def _delivery_time(request: web.Request) -> int:
    """When the order was delivered: the body's `delivered_at` (ms; not in the future), or
    now without a body."""
    now = http_support.now_ms()
    payload = await http_support.json_object(request, empty_is_object=True)
    if payload.get("delivered_at") is None:
        return now
    return http_support.whole_number_field(payload, "delivered_at", minimum=0, maximum=now)


def _replacement_request(payload: Mapping[str, Any]) -> ReplacementRequest:
    quantity = http_support.required_field(payload, "quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise http_support.invalid_field("quantity", f"must be a whole number, got {quantity!r}")
    if not 1 <= quantity <= MAX_QUANTITY:
        raise http_support.invalid_field("quantity", f"must be from 1 to {MAX_QUANTITY}")
    ship_to = payload.get("ship_to", "")
    if not isinstance(ship_to, str):
        raise http_support.invalid_field("ship_to", "must be a string")
    return ReplacementRequest(
        return_id=http_support.text_field(payload, "return_id"),
        order_ref=http_support.text_field(payload, "order_ref"),
        buyer_id=http_support.text_field(payload, "buyer_id"),
        sku=http_support.text_field(payload, "sku"),
        quantity=quantity,
        ship_to=ship_to,
    )


def main() -> int:
    return partner_double.run_double(SERVICE_NAME, MarketplaceSettings.from_env, MarketplaceDouble)


if __name__ == "__main__":
    sys.exit(main())
