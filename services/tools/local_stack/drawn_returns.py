"""The returns a run drives: drawn at random from a seed, each with the refund foreseen.

A buyer's request body mixes markets (currencies of 0, 2 and 3 decimals), categories,
reasons, payment methods and whole orders; the refund the services should pay for it is
worked out with the services' own pure decisions on the same policy files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from services.decisions.refunds.refund_plan import plan_refund
from services.eventing.envelope import now_ms
from services.policy_files.loader import PolicySet, load_policy_set, policy_dir
from services.returns.order_facts import order_facts
from services.returns.order_facts import return_request as request_from_order
from services.returns.return_policy import decide_return
from services.returns.return_request import ReturnRequest, iso_instant_ms, parse_return_claim
from services.tools.partners.marketplace_catalog import Catalog

CATEGORIES = ("apparel", "shoes", "electronics", "home", "toys", "beauty")
REASONS = (
    "CHANGED_MIND",
    "WRONG_SIZE",
    "DEFECTIVE",
    "NOT_AS_DESCRIBED",
    "DAMAGED_ON_ARRIVAL",
    "LATE_DELIVERY",  # the platform's fault
)
TRANSIT_DAMAGE_SHARE = 0.08  # parcels that arrive damaged, outer box too: the carrier's fault


@dataclass
class TrackedReturn:
    """One drawn return and what the run has seen of it so far."""

    index: int
    idempotency_key: str
    body: dict[str, Any]
    expected_minor: int
    grades: list[str] = field(default_factory=list)  # per returned unit, as scanned
    packaging_damaged: bool = False  # the scanner reports the outer box damaged on arrival
    expected_method: str = ""  # where the refund goes
    expected_liable: str = ""
    return_id: str = ""
    requested_at: float = 0.0
    collected: bool = False
    scanned: bool = False
    refunded_at: float = 0.0
    terminal: str = ""
    ended_at: float = 0.0  # when the driver saw ReturnCompleted or ReturnFailed
    failed_pickup_attempts: int = 0  # the carrier's failed attempts (not booking errors)
    moved: bool = False  # the buyer asked to move the booked pickup
    # the buyer disputed the deduction: "asked", "open" (re-inspection asked), "refused",
    # "decided"; the decision and what it refunded
    dispute: str = ""
    dispute_decision: str = ""
    dispute_refunded_minor: int = 0
    errors: list[str] = field(default_factory=list)
    # a seeded abuser's return (demo_risk): what kind, and what the scan finds on each item
    # (a light parcel, a serial never shipped, wear); the rules never read `abuse`
    abuse: str | None = None
    item_changes: dict[str, Any] = field(default_factory=dict)


PAYMENT_METHODS = ("CARD", "CARD", "EWALLET", "BNPL", "DIRECT_DEBIT", "BANK_TRANSFER", "COD")
EXCHANGE_SHARE = 0.06  # returns asking for another variant instead of money
# the policies ask for photos of a fault (up to two for a defect in ID electronics)
PHOTO_REASONS = frozenset({"DAMAGED_ON_ARRIVAL", "DEFECTIVE", "NOT_AS_DESCRIBED"})


def make_request(rng: random.Random, index: int, run_id: str) -> TrackedReturn:
    """A buyer's return, with the refund the services should pay for it worked out from
    the same policy files they use. The demo drives returns that end with the money back
    (or a replacement): a draw the policy would reject is drawn again."""
    for _ in range(100):
        body, grades = random_return(rng, index, run_id)
        transit_damage = rng.random() < TRANSIT_DAMAGE_SHARE
        if transit_damage:
            grades = ["D", *grades[1:]]
        try:
            expected = expected_refund(body, grades, transit_damage)
            break
        except ValueError:
            continue
    else:
        raise RuntimeError("100 draws in a row were rejected by the policies: check them")
    if body.get("resolution") == "EXCHANGE" and not expected.reduced:
        # the marketplace double has stock: no money (an item the buyer damaged is refunded)
        expected = ExpectedRefund(0, "EXCHANGE", expected.liable)
    return TrackedReturn(
        index,
        f"demo-{run_id}-{index}",
        body,
        expected.amount_minor,
        grades,
        transit_damage,
        expected.method,
        expected.liable,
    )


@dataclass(frozen=True)
class DemoMarket:
    """What a market's returns look like: currency, prices, fees, addresses, dates."""

    currency: str
    prices: tuple[int, int]  # unit prices drawn from this range, in minor units
    shipping_fees: tuple[int, ...]
    street: str
    delivered_days_ago: tuple[int, int]  # inside the market's shortest return window


MARKETS = {
    "DE": DemoMarket("EUR", (199, 25_000), (0, 399, 499), "Musterstrasse {n}, Berlin", (1, 25)),
    "ID": DemoMarket(
        "IDR", (15_000, 2_500_000), (0, 9_000, 15_000), "Jl. Sudirman {n}, Jakarta", (1, 6)
    ),
    "KW": DemoMarket("KWD", (500, 60_000), (0, 500, 750), "Block {n}, Salmiya", (1, 10)),
}
MARKET_MIX = ("DE", "DE", "DE", "ID", "KW")  # euro cents, rupiah without decimals, fils


def random_return(
    rng: random.Random,
    index: int,
    run_id: str,
    exchange_share: float = EXCHANGE_SHARE,
    markets: tuple[str, ...] = MARKET_MIX,
) -> tuple[dict[str, Any], list[str]]:
    """A buyer's return request body: mixed markets (and currencies of 0, 2 and 3
    decimals), categories, reasons and payment methods; half of them send the whole order
    (a voucher, shipping, a line kept). The grades each returned unit will be scanned with
    are chosen now (so the refund can be foreseen)."""
    market_code = rng.choice(markets)
    market = MARKETS[market_code]
    lines, order_lines = [], []
    for n in range(rng.randint(1, 3)):
        bought = rng.randint(1, 3)
        price = rng.randint(*market.prices)
        line_id = f"L{n + 1}"
        order_lines.append(
            {"line_id": line_id, "sku": f"SKU-{rng.randint(1, 400):04d}-{n}", "quantity": bought}
            | {"unit_price_minor": price}
        )
        lines.append(
            {
                "order_line_id": line_id,
                "sku": order_lines[-1]["sku"],
                "quantity": rng.randint(1, bought),
                "quantity_bought": bought,
                "unit_price": {"amount_minor": price, "currency": market.currency},
            }
        )
    reason = rng.choice(REASONS)
    delivered = datetime.now(UTC) - timedelta(days=rng.randint(*market.delivered_days_ago))
    body: dict[str, Any] = {
        "order_ref": f"ORD-{run_id}-{index:05d}",
        # a buyer and an address of its own: in a run of minutes an honest buyer returns
        # once (drawn from a few thousand, buyers returned again and again, and the risk
        # rules rightly held them: claims overturned, many buyers behind one address)
        "buyer_id": f"B-{run_id}-{index}",
        "seller_id": f"S-{rng.randint(1, 60)}",
        "category": rng.choice(CATEGORIES),
        "market": market_code,
        "reason_code": reason,
        "delivered_at": delivered.date().isoformat(),
        "payment_method": rng.choice(PAYMENT_METHODS),
        "pickup_address": market.street.format(n=f"{index + 1}-{run_id}"),
        "lines": lines,
        "photo_refs": [f"photo://{run_id}/{index}-{n}.jpg" for n in range(2)]
        if reason in PHOTO_REASONS
        else [],
        "store_credit": rng.random() < 0.1,
    }
    if body["payment_method"] == "BANK_TRANSFER" and rng.random() < 0.5:
        body["refund_account"] = demo_bank_account(index)  # else the saga asks for it
    if rng.random() < exchange_share:
        # another size of the first line's product (an exchange is for one product)
        body |= {"resolution": "EXCHANGE", "exchange_sku": f"{lines[0]['sku']}-XL"}
        body["lines"] = lines[:1]
        body.pop("store_credit")
    if rng.random() < 0.5:
        kept_price = rng.randint(*market.prices)
        kept = {"line_id": "LX", "sku": "SKU-KEPT", "quantity": 1, "unit_price_minor": kept_price}
        goods = sum(ol["unit_price_minor"] * ol["quantity"] for ol in order_lines) + kept_price
        body["order"] = {
            "currency": market.currency,
            "lines": [*order_lines, kept],
            "discount_minor": rng.randint(0, goods // 5),
            "shipping_fee_minor": rng.choice(market.shipping_fees),
        }
    returned = body["lines"]  # an exchange returns its first line only
    grades = [rng.choice("AAAABBC") for line in returned for _ in range(line["quantity"])]
    return body, grades


def demo_bank_account(index: int) -> dict[str, str]:
    """The bank account buyer `index` gives for a bank-transfer (or COD) refund."""
    return {"holder": f"Demo Buyer {index}", "number": f"DE{index:020d}", "bank_code": "DEMOBANK"}


@dataclass(frozen=True)
class ExpectedRefund:
    """The refund the services should pay: amount, where it goes and who is liable."""

    amount_minor: int
    method: str
    liable: str
    reduced: bool = False  # damaged by the buyer: the policy reduced the refund


def expected_refund(
    body: dict[str, Any], grades: list[str], packaging_damaged: bool = False
) -> ExpectedRefund:
    """What the services should refund: the front door's and the saga's own pure decisions,
    on the policy files they load (deploy/policies, or $BOOMERANG_POLICY_DIR)."""
    request = request_of(body)
    decision = decide_return(_policies(), request, now_ms())
    if not decision.accepted or decision.policy_json is None:
        raise ValueError(f"the demo built a return the policy rejects: {decision.detail}")
    items = [
        {"sku": "", "grade": grade, "matches_order": True, "packaging_damaged": packaging_damaged}
        for grade in grades
    ]
    plan = plan_refund(
        {**request.event_fields(), "reason_family": decision.reason_family},
        json.loads(decision.policy_json),
        items,
        carrier_noted_damage=False,
    )
    if plan.rejection or not plan.refund:
        raise ValueError(f"the policy rejects the return at inspection: {plan.rejection}")
    refund = plan.refund
    return ExpectedRefund(
        refund["amount"]["amount_minor"],
        refund["method"],
        refund["liable"],
        refund["liability"]["refund"] == "REDUCED",
    )


@cache
def _policies() -> PolicySet:
    """The policy files the services load, read once."""
    return load_policy_set(policy_dir())


# Sellers settle in their own currency: a fifth in USD, a fifth in GBP, the rest in EUR.
SELLER_CURRENCIES = ("USD", "GBP", "EUR", "EUR", "EUR")
# the rates the marketplace locks on an order, buyer's currency → seller's (decimal strings)
DEMO_RATES = {
    ("EUR", "USD"): "1.0842",
    ("EUR", "GBP"): "0.8563",
    ("IDR", "EUR"): "0.0000583",
    ("IDR", "USD"): "0.0000632",
    ("IDR", "GBP"): "0.0000499",
    ("KWD", "EUR"): "3.0051",
    ("KWD", "USD"): "3.2581",
    ("KWD", "GBP"): "2.5733",
}


def seller_currency(seller_id: str) -> str:
    """The currency a demo seller settles in (the same for all its orders)."""
    return SELLER_CURRENCIES[int(seller_id.rpartition("-")[2]) % len(SELLER_CURRENCIES)]


def order_body(tracked: TrackedReturn) -> dict[str, Any]:
    """The order a demo return is about, as the marketplace placed it (`marketplace_order`),
    with commission per line and the rate locked between the buyer's and the seller's
    currency drawn from the return's own key: the same order on every call."""
    rng = random.Random(tracked.idempotency_key)
    return marketplace_order(
        tracked.body, lambda: rng.choice((800, 1000, 1200, 1500)), seller_currency, serials=True
    )


def marketplace_order(
    body: dict[str, Any],
    commission_bps: Callable[[], int] = lambda: 1000,
    settles_in: Callable[[str], str] | None = None,
    serials: bool = False,
) -> dict[str, Any]:
    """The order a full return body describes (every fact an older client stated), as the
    marketplace places it (`POST /orders`): the lines bought (the whole order when the body
    gives it), its category on every line, the order's discount spread over its lines, its
    shipping fee and tax; with `serials`, one made-up serial per unit shipped (the demo's
    risk checks them against the scans). A test or a demo places it before the return: the
    front door takes every fact from it."""
    currency = body["lines"][0]["unit_price"]["currency"]
    seller_currency_ = settles_in(body["seller_id"]) if settles_in else currency
    order = body.get("order") or {}
    bought = order.get("lines") or [
        {
            "line_id": line.get("order_line_id") or f"L-{line['sku']}",
            "sku": line["sku"],
            "quantity": line["quantity_bought"],
            "unit_price_minor": line["unit_price"]["amount_minor"],
        }
        for line in body["lines"]
    ]
    discounts = spread(
        order.get("discount_minor", 0), [ln["unit_price_minor"] * ln["quantity"] for ln in bought]
    )
    return {
        "order_ref": body["order_ref"],
        "market": body["market"],
        "buyer_id": body["buyer_id"],
        "seller_id": body["seller_id"],
        "currency": currency,
        "seller_currency": seller_currency_,
        "fx_rate": DEMO_RATES.get((currency, seller_currency_), "1"),
        "shipping_fee_minor": order.get("shipping_fee_minor", 0),
        "paid_with": body["payment_method"],
        "pickup_address": body.get("pickup_address", ""),
        "tax_basis": order.get("tax_basis", "INCLUSIVE"),
        "tax_rate_bp": order.get("tax_rate_bp", 0),
        "lines": [
            {
                "line_id": line["line_id"],
                "sku": line["sku"],
                "quantity": line["quantity"],
                "unit_price_minor": line["unit_price_minor"],
                "discount_minor": discount,
                "commission_bps": commission_bps(),
                "serials": (
                    [f"SN-{line['sku']}-{n}" for n in range(line["quantity"])] if serials else []
                ),
                "category": body["category"],
            }
            for line, discount in zip(bought, discounts, strict=True)
        ],
    }


def delivered_at_ms(body: dict[str, Any]) -> int:
    """When the body says the order was delivered (an ISO date is its midnight UTC): the
    marketplace double delivers it then (`POST /orders/{ref}/delivered`)."""
    return iso_instant_ms(body["delivered_at"])


def request_of(body: dict[str, Any]) -> ReturnRequest:
    """The request the front door makes of a full body once its order is placed."""
    claim = parse_return_claim(body)
    record = {**marketplace_order(body), "delivered_at": delivered_at_ms(body)}
    record["lines"] = [Catalog().line_with_variants(line) for line in record["lines"]]
    return request_from_order(claim, order_facts(record))


def spread(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights`, the remainder to the largest shares first
    (largest remainder), so the parts add up to `total`."""
    whole = sum(weights)
    if not whole:
        return [0] * len(weights)
    parts = [total * w // whole for w in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: -(total * weights[i] % whole))
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts
