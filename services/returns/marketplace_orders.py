"""The front door's window on the marketplace's order system: `GET /orders/{order_ref}`
(MARKETPLACE_URL), read into OrderFacts (`order_facts`).

Delivered orders are kept in a bounded cache (ORDER_CACHE_SIZE entries, ORDER_CACHE_TTL_S
each): a buyer's retry and the other lines of one order cost no second call. An order not
delivered yet, and an unknown one, are asked again every time (it may be delivered in a
minute). No answer, a 5xx or an unreadable record is `OrderSystemUnavailable`: the request
is answered 503 with Retry-After, nothing is recorded, and the buyer may send it again.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from services.eventing.partner_http import PartnerHttp, PartnerUnreachable
from services.returns.order_facts import (
    OrderFacts,
    OrderRecordError,
    OrderSystemUnavailable,
    order_facts,
)


@dataclass(frozen=True)
class CacheTerms:
    size: int = 10_000
    ttl_s: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> CacheTerms:
        return cls(
            int(env.get("ORDER_CACHE_SIZE", "10000")), float(env.get("ORDER_CACHE_TTL_S", "300"))
        )


class MarketplaceOrders:
    """OrderSource over the marketplace's HTTP API, with the cache of delivered orders."""

    def __init__(
        self, http: PartnerHttp, clock_s: Callable[[], float], terms: CacheTerms = CacheTerms()
    ) -> None:
        self.http = http
        self.clock_s = clock_s
        self.terms = terms
        self._delivered: OrderedDict[str, tuple[float, OrderFacts]] = OrderedDict()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def find(self, order_ref: str) -> OrderFacts | None:
        now = self.clock_s()
        kept = self._delivered.get(order_ref)
        if kept is not None and now - kept[0] < self.terms.ttl_s:
            self._delivered.move_to_end(order_ref)
            return kept[1]
        try:
            response = await self.http.request("GET", f"/orders/{quote(order_ref, safe='')}")
        except PartnerUnreachable as exc:
            raise OrderSystemUnavailable(f"no answer: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise OrderSystemUnavailable(f"HTTP {response.status_code}")
        try:
            facts = order_facts(response.json())
        except (OrderRecordError, ValueError) as exc:
            raise OrderSystemUnavailable(f"an unreadable order record: {exc}") from exc
        if facts.order_ref != order_ref:
            raise OrderSystemUnavailable(f"asked for {order_ref}, answered {facts.order_ref}")
        if facts.delivered_at_ms is not None:
            self._delivered[order_ref] = (now, facts)
            self._delivered.move_to_end(order_ref)
            while len(self._delivered) > self.terms.size:
                self._delivered.popitem(last=False)
        return facts
