"""A completed return and its order become what settlement charges
(services/decisions/settlement/completed_returns.py): the charges refund exactly what the
breakdown refunded, the order gives the seller, currencies, rate and commission, and what
cannot be settled says why. One case runs a return through every service's handlers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.settlement.completed_returns import (
    NotSettleable,
    charges_of,
    return_to_settle,
)
from services.decisions.settlement.journal import imbalance
from services.decisions.settlement.return_postings import (
    SettlementTerms,
    liability_entry,
    refund_entry,
)
from tests.support.in_memory_loop import InMemoryLoop
from tests.unit.test_handlers_loop import collect, inspect, request_return, saga_view


@st.composite
def breakdown_lines(draw: st.DrawFn, n: int) -> dict[str, Any]:
    goods = draw(st.integers(0, 10**7))
    damage = draw(st.integers(0, goods))
    restocking = draw(st.integers(0, goods - damage))
    tax = draw(st.integers(0, 10**6))
    shipping = draw(st.integers(0, 10**4))
    before = goods - damage - restocking + tax + shipping
    return_shipping = draw(st.integers(0, before))
    return {
        "line_id": f"L{n}",
        "sku": f"SKU-{n}",
        "currency": "EUR",
        "shipping_minor": shipping,
        "return_shipping_minor": return_shipping,
        "restocking_fee_minor": restocking,
        "damage_deduction_minor": damage,
        "amount_minor": before - return_shipping,
    }


def order_of(lines: list[dict[str, Any]], seller_currency: str = "EUR") -> dict[str, Any]:
    return {
        "order_ref": "O-1",
        "currency": "EUR",
        "seller_id": "S-1",
        "seller_currency": seller_currency,
        "fx_rate": "1" if seller_currency == "EUR" else "0.8563",
        "lines": [
            {"line_id": line["line_id"], "sku": line["sku"], "commission_bps": 1_200}
            for line in lines
        ],
    }


def completion(lines: list[dict[str, Any]], liable: str | None = "SELLER") -> dict[str, Any]:
    return {
        "envelope": {"return_id": "RMA-1"},
        "liable": liable,
        "breakdown": lines,
        "refunded": {"amount_minor": sum(x["amount_minor"] for x in lines), "currency": "EUR"},
    }


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5).flatmap(lambda n: st.tuples(*(breakdown_lines(i) for i in range(n)))))
def test_the_charges_refund_exactly_what_the_breakdown_refunded(lines: tuple) -> None:
    charges = charges_of("EUR", list(lines), order_of(list(lines)))
    assert charges.refunded == sum(line["amount_minor"] for line in lines)
    settled = return_to_settle(completion(list(lines)), order_of(list(lines), "GBP"))
    entry = liability_entry(settled, SettlementTerms(), 1)
    assert entry is None or imbalance(entry.postings) == {}


def test_what_cannot_be_settled_says_why() -> None:
    line = {
        "line_id": "L1",
        "sku": "SKU-1",
        "currency": "EUR",
        "shipping_minor": 0,
        "return_shipping_minor": 0,
        "restocking_fee_minor": 0,
        "damage_deduction_minor": 0,
        "amount_minor": 100,
    }
    order = order_of([line])
    with pytest.raises(NotSettleable, match="no liable party"):
        return_to_settle(completion([line], liable=None), order)
    with pytest.raises(NotSettleable, match="not in the order"):
        return_to_settle(completion([{**line, "line_id": "L9", "sku": "SKU-9"}]), order)
    wrong_total = {**completion([line]), "refunded": {"amount_minor": 99, "currency": "EUR"}}
    with pytest.raises(NotSettleable, match="says 99"):
        return_to_settle(wrong_total, order)
    with pytest.raises(NotSettleable, match="order in USD"):
        return_to_settle(completion([line]), {**order, "currency": "USD"})
    with pytest.raises(NotSettleable, match="nothing was refunded"):
        return_to_settle({**completion([line]), "breakdown": []}, order)


def test_a_return_through_every_services_handlers_settles_and_balances() -> None:
    async def scenario() -> None:
        loop = InMemoryLoop()
        return_id = await request_return(loop)
        await collect(loop, return_id)
        assert (await inspect(loop, return_id)).status == 202
        assert (await saga_view(loop, return_id))["status"] == "COMPLETED"
        [completed] = [r for _, n, r, _ in loop.delivered if n == "ReturnCompleted"]
        [issued] = [r for _, n, r, _ in loop.delivered if n == "RefundIssued"]
        order = order_of(completed["breakdown"], "GBP")
        settled = return_to_settle(completed, order)
        refund = refund_entry(
            return_id,
            issued["amount"]["amount_minor"],
            issued["amount"]["currency"],
            issued["envelope"]["occurred_at"],
            issued["provider"],
        )
        liability = liability_entry(settled, SettlementTerms(), completed["completed_at"])
        assert refund is not None and liability is not None
        together = (*refund.postings, *liability.postings)
        assert imbalance(together) == {}
        clearing = sum(p.amount_minor for p in together if p.account.startswith("returns_"))
        assert clearing == 0  # what was paid out is charged to the liable party in full

    asyncio.run(scenario())
