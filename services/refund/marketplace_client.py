"""Thin HTTP adapter for the marketplace's replacement orders (exchanges).

The Idempotency-Key comes from the command (`{return_id}-replacement`): a retry after a lost
answer finds the first order (or the first out-of-stock answer), never places a second one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.eventing.handler_contract import DomainRejection, TransientFailure
from services.eventing.partner_http import (
    PartnerHttp,
    PartnerUnreachable,
)


class MarketplaceRefused(DomainRejection):
    reason = "marketplace-refused"


@dataclass(frozen=True)
class ReplacementAnswer:
    placed: bool
    replacement_order_id: str = ""
    available: int = 0


@dataclass(frozen=True)
class ReplacementOrder:
    """A replacement order for an exchange, placed once per idempotency key."""

    key: str
    return_id: str
    order_ref: str
    buyer_id: str
    sku: str
    quantity: int
    ship_to: str

    def body(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in REPLACEMENT_FIELDS}


REPLACEMENT_FIELDS = ("return_id", "order_ref", "buyer_id", "sku", "quantity", "ship_to")


class MarketplaceClient:
    def __init__(self, http: PartnerHttp) -> None:
        self.http = http

    async def aclose(self) -> None:
        await self.http.aclose()

    async def place_replacement(self, order: ReplacementOrder) -> ReplacementAnswer:
        try:
            response = await self.http.post(
                "/replacement-orders", json=order.body(), headers={"Idempotency-Key": order.key}
            )
        except PartnerUnreachable as exc:
            raise TransientFailure(f"marketplace: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TransientFailure(f"marketplace: HTTP {response.status_code}")
        try:
            data = response.json() if response.status_code in (200, 201, 409) else {}
        except ValueError:
            data = {}  # an error page, not the marketplace's answer: refused below
        if response.status_code in (200, 201) and data.get("replacement_order_id"):
            return ReplacementAnswer(True, data["replacement_order_id"])
        if response.status_code == 409 and data.get("error") == "out_of_stock":
            return ReplacementAnswer(False, available=int(data.get("available", 0)))
        raise MarketplaceRefused(f"marketplace: HTTP {response.status_code} {response.text[:300]}")


def marketplace_http(base_url: str, timeout_s: float = 5.0) -> PartnerHttp:
    return PartnerHttp(base_url, timeout_s, partner="marketplace")
