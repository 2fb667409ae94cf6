"""In-memory partners for handler tests: they record every call and answer as the real
partners' clients would (same return types, same exceptions), with no network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.eventing.handler_contract import Outbound, TransientFailure
from services.pickup.carrier_client import Booking
from services.refund.marketplace_client import ReplacementAnswer, ReplacementOrder
from services.refund.psp_client import ChargeOrder, ProviderDown, PspAnswer, RefundOrder


@dataclass
class FakeCarrier:
    """Books once per idempotency key; `down` makes every call a transient failure."""

    down: bool = False
    cancel_outcome: str = "cancelled"
    bookings: dict[str, Booking] = field(default_factory=dict)  # idempotency key -> booking
    calls: list[tuple[str, str]] = field(default_factory=list)  # (book|cancel, key)

    async def book(
        self, key: str, return_id: str, buyer_id: str, address: str, parcel_count: int
    ) -> Booking:
        self.calls.append(("book", key))
        if self.down:
            raise TransientFailure("carrier POST /pickups: ConnectError")
        number = len(self.bookings) + 1
        booking = Booking(f"BK-{number}", f"TRK-{number}", "fake-express", 1, 2)
        return self.bookings.setdefault(key, booking)

    async def cancel(self, key: str, booking_id: str) -> str:
        self.calls.append(("cancel", key))
        if self.down:
            raise TransientFailure("carrier DELETE: ConnectError")
        return self.cancel_outcome


@dataclass
class FakePsp:
    """One refund per idempotency key (a second call replays it); `decline` answers a 402
    with that code (for the methods in `declined_methods`, every method when empty), `down`
    as if the provider could not be reached at all, `flaky` as if the request may have
    reached it (a timeout)."""

    name: str = "psp"
    status: str = "SUCCEEDED"
    decline: str = ""
    declined_methods: frozenset[str] = frozenset()
    down: bool = False
    flaky: bool = False
    void_outcome: str = "voided"
    refunds: dict[str, RefundOrder] = field(default_factory=dict)
    voids: list[str] = field(default_factory=list)
    charges: dict[str, ChargeOrder] = field(default_factory=dict)

    async def refund(self, order: RefundOrder) -> PspAnswer:
        if self.down:
            raise ProviderDown(f"{self.name}: ConnectError")
        if self.flaky:
            raise TransientFailure(f"{self.name}: ReadTimeout")
        if self.decline and (not self.declined_methods or order.method in self.declined_methods):
            return PspAnswer(False, decline_code=self.decline, detail="declined by the fake")
        replayed = order.key in self.refunds
        self.refunds.setdefault(order.key, order)
        refund_id = f"{self.name}-R{list(self.refunds).index(order.key) + 1}"
        return PspAnswer(True, refund_id, self.status, replayed=replayed)

    async def void(self, refund_id: str) -> str:
        self.voids.append(refund_id)
        return self.void_outcome

    async def charge(self, order: ChargeOrder) -> PspAnswer:
        if self.down:
            raise ProviderDown(f"{self.name}: ConnectError")
        if self.decline:
            return PspAnswer(False, decline_code=self.decline, detail="declined by the fake")
        self.charges.setdefault(order.key, order)
        charge_id = f"{self.name}-C{list(self.charges).index(order.key) + 1}"
        return PspAnswer(True, charge_id, "CAPTURED")


@dataclass
class FakeMarketplace:
    in_stock: int = 5
    replacements: list[tuple[str, str, int]] = field(default_factory=list)  # key, sku, qty

    async def place_replacement(self, order: ReplacementOrder) -> ReplacementAnswer:
        if order.quantity > self.in_stock:
            return ReplacementAnswer(False, available=self.in_stock)
        self.replacements.append((order.key, order.sku, order.quantity))
        return ReplacementAnswer(True, f"REPL-{len(self.replacements)}")


@dataclass
class Published:
    """A `publish` port that keeps what it was given."""

    records: list[Outbound] = field(default_factory=list)

    async def __call__(self, outbound: Any) -> None:
        self.records.extend(outbound)

    def names(self) -> list[str]:
        return [record[0] for record in self.records]
