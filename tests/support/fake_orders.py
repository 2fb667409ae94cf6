"""The marketplace's order system in memory (an OrderSource for the front door's tests):
the orders a test places, as the double would answer them (with the catalog's variants)."""

from __future__ import annotations

from typing import Any

from services.returns.order_facts import OrderFacts, OrderSystemUnavailable, order_facts
from services.tools.local_stack.drawn_returns import delivered_at_ms, marketplace_order
from services.tools.partners.marketplace_catalog import Catalog


class FakeOrders:
    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.asked: list[str] = []
        self.down = False  # True: every lookup is OrderSystemUnavailable
        self.described: set[str] = set()  # orders placed from a body, not by the test itself
        self.catalog = Catalog()  # the double's: each line's product and variants

    def place(self, record: dict[str, Any]) -> None:
        self.records[record["order_ref"]] = record

    def place_for(self, body: dict[str, Any]) -> None:
        """The delivered order a full return body describes (every fact it states)."""
        self.place({**marketplace_order(body), "delivered_at": delivered_at_ms(body)})
        self.described.discard(body["order_ref"])

    def place_described(self, body: Any) -> None:
        """The order a full return body describes (the tests' bodies reuse order refs: the
        last body's order), unless the test placed that order itself or the body does not
        describe one (a test of the front door's refusals)."""
        try:
            order_ref = body["order_ref"]
            if order_ref not in self.records or order_ref in self.described:
                self.place_for(body)
                self.described.add(order_ref)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            pass

    async def find(self, order_ref: str) -> OrderFacts | None:
        self.asked.append(order_ref)
        if self.down:
            raise OrderSystemUnavailable("the fake order system is down")
        record = self.records.get(order_ref)
        if record is None:
            return None
        lines = [self.catalog.line_with_variants(line) for line in record["lines"]]
        return order_facts({**record, "lines": lines})
