"""The seven services' handlers as their composition roots wire them (each app's `wiring`),
with in-memory tables and fake partners, records routed by topic and each one encoded and
decoded by the real Avro codec — no broker, no HTTP server, no engine.

Records are delivered one at a time in the order they were published, to every subscription
of their topic that accepts them, as one consumer per service would see them; failures are
handled as the consume loop handles them (`handle`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from services.coordinator import app as coordinator_app
from services.coordinator.handlers import CoordinatorPorts
from services.decisions.refunds.provider_routing import ProviderRoutes
from services.decisions.saga import SagaConfig
from services.eventing.avro_codec import AvroCodec
from services.eventing.envelope import check_envelope
from services.eventing.handler_contract import (
    DomainRejection,
    HttpAnswer,
    HttpRequest,
    Incoming,
    Outbound,
    Route,
    Subscription,
    TransientFailure,
    Wiring,
)
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import topic_for_record
from services.eventing.webhook_signature import CARRIER_SIGNATURE, PSP_SIGNATURE
from services.inspection import app as inspection_app
from services.inspection.handlers import InspectionPorts
from services.pickup import app as pickup_app
from services.pickup.handlers import PickupPorts
from services.refund import app as refund_app
from services.refund.handlers import Partners, RefundPorts
from services.returns import app as returns_app
from services.returns.handlers import ReturnsPorts
from services.risk import app as risk_app
from services.risk.handlers import RiskPorts
from services.warehouse_intake import app as intake_app
from services.warehouse_intake.handlers import IntakePorts
from tests.support.buyer_signin import authenticate, bearer
from tests.support.fake_orders import FakeOrders
from tests.support.fake_partners import FakeCarrier, FakeMarketplace, FakePsp
from tests.support.policies import deployed_rules

CODEC = AvroCodec(SchemaCatalogue.load())
CARRIER_SECRET = b"carrier-secret-for-tests"
PSP_SECRET = b"psp-secret-for-tests"
STATION, STATION_TOKEN = "ST-1", "station-token-for-tests-0001"
REVIEWER, REVIEWER_TOKEN = "reviewer-1", "reviewer-token-for-tests-0001"


@dataclass
class Clock:
    now_ms: int = 1_790_000_000_000

    def __call__(self) -> int:
        return self.now_ms

    def seconds(self) -> int:
        return self.now_ms // 1000


@dataclass
class PublishedPolicies:
    """The policy snapshots topic as the coordinator's GlobalTable reads it: what was
    published is there."""

    values: dict[str, str] = field(default_factory=dict)

    async def get(self, key: str) -> str | None:
        return self.values.get(key)


@dataclass
class InMemoryLoop:
    clock: Clock = field(default_factory=Clock)
    carrier: FakeCarrier = field(default_factory=FakeCarrier)
    psp: FakePsp = field(default_factory=FakePsp)
    marketplace: FakeMarketplace = field(default_factory=FakeMarketplace)
    orders: FakeOrders = field(default_factory=FakeOrders)  # the order system's orders
    saga_config: SagaConfig = field(default_factory=SagaConfig)
    delivered: list[tuple[str, str, dict[str, Any], bytes | None]] = field(default_factory=list)
    pending: deque[tuple[str, str, bytes, bytes | None]] = field(default_factory=deque)
    dead_letters: list[tuple[str, str, Exception]] = field(default_factory=list)
    return_numbers: itertools.count = field(default_factory=lambda: itertools.count(1))
    offsets: dict[str, int] = field(default_factory=dict)  # topic → next offset (one partition)
    audit_trail: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        publish = self.publish
        self.returns = ReturnsPorts(
            answers={},
            policy=deployed_rules(),
            publish=publish,
            clock_ms=self.clock,
            orders=self.orders,
            authenticate=authenticate,
            new_return_id=lambda: f"RMA-MEM-{next(self.return_numbers):06d}",
        )
        self.policy_snapshots = PublishedPolicies()
        self.coordinator = CoordinatorPorts(
            sagas={}, config=self.saga_config, clock_ms=self.clock, policies=self.policy_snapshots
        )
        self.pickup = PickupPorts(
            answered={},
            carrier=self.carrier,
            signing_secret=CARRIER_SECRET,
            publish=publish,
            clock_s=self.clock.seconds,
        )
        self.inspection = InspectionPorts(
            returns={},
            scans={},
            station_tokens={STATION: STATION_TOKEN},
            publish=publish,
            clock_ms=self.clock,
        )
        self.intake = IntakePorts(intakes={}, ledger={})
        partners = Partners(
            {self.psp.name: self.psp},
            ProviderRoutes.single(self.psp.name),
            {self.psp.name: PSP_SECRET},
            self.marketplace,
        )
        self.refund = RefundPorts(
            refunds={},
            routes={},
            order_ledger={},
            partners=partners,
            publish=publish,
            clock_s=self.clock.seconds,
        )
        windows: dict[str, Any] = {}

        async def every_window() -> dict[str, Any]:
            return windows

        async def audit(event: dict[str, Any]) -> None:
            self.audit_trail.append(event)

        self.risk = RiskPorts(
            returns={},
            orders={},
            windows=windows,
            cases={},
            all_windows=every_window,
            live=risk_app.rule_set_from(risk_app.LIVE_RULES),
            shadow=None,
            reviewer_tokens={REVIEWER: REVIEWER_TOKEN},
            publish=publish,
            audit=audit,
            clock_ms=self.clock,
        )
        self.wirings: dict[str, Wiring] = {
            "returns": returns_app.wiring(self.returns),
            "coordinator": coordinator_app.wiring(self.coordinator),
            "pickup": pickup_app.wiring(self.pickup),
            "inspection": inspection_app.wiring(self.inspection),
            "warehouse-intake": intake_app.wiring(self.intake),
            "refund": refund_app.wiring(self.refund),
            "risk": risk_app.wiring(self.risk),
        }

    async def publish(self, outbound: Any) -> None:
        for name, record, *key in outbound:
            value = CODEC.encode(name, record)  # a record the schema refuses fails here
            topic = topic_for_record(name).name
            if name == "PolicySnapshotPublished":  # a table every instance reads whole
                self.policy_snapshots.values[record["policy_digest"]] = record["policy_json"]
            self.pending.append((topic, name, value, key[0] if key else None))

    async def replay(self) -> int:
        """Deliver every record delivered so far once more, keys and all (an on-call replay
        of every topic); the number of records delivered."""
        for _, name, record, key in list(self.delivered):
            self.pending.append(
                (topic_for_record(name).name, name, CODEC.encode(name, record), key)
            )
        return await self.run()

    async def run(self, max_records: int = 10_000) -> int:
        """Deliver until nothing is pending; the number of records delivered."""
        count = 0
        while self.pending:
            count += 1
            assert count <= max_records, "the loop does not settle"
            topic, _, value, key = self.pending.popleft()
            offset = self.offsets.get(topic, 0)
            self.offsets[topic] = offset + 1
            decoded = CODEC.decode(value)
            self.delivered.append((topic, decoded.name, decoded.record, key))
            for wiring in self.wirings.values():
                for subscription in wiring.subscriptions:
                    if topic not in subscription.topics:
                        continue
                    if (
                        subscription.accepts is not None
                        and decoded.name not in subscription.accepts
                    ):
                        continue
                    record_key = (
                        key if key is not None else decoded.record["envelope"]["return_id"].encode()
                    )
                    check_envelope(
                        decoded.name,
                        decoded.record,
                        key=record_key if subscription.keyed_by_return else None,
                    )
                    incoming = Incoming(decoded.name, decoded.record, record_key, topic, 0, offset)
                    await self.publish(await self.handle(subscription, incoming, topic))
        return count

    async def handle(
        self, subscription: Subscription, incoming: Incoming, topic: str
    ) -> list[Outbound]:
        """As the consume loop does, without its retries and pauses: a transient failure is
        taken as one that outlived its retries (`on_exhausted`, else a dead letter); a domain
        rejection is a dead letter."""
        try:
            return list(await subscription.handler(incoming))
        except TransientFailure as exc:
            if subscription.on_exhausted is None:
                self.dead_letters.append((topic, incoming.name, exc))
                return []
            return list(await subscription.on_exhausted(incoming, exc))
        except DomainRejection as exc:
            self.dead_letters.append((topic, incoming.name, exc))
            return []

    def route(self, service: str, method: str, path: str) -> Route:
        """The route of `service` whose pattern matches `path` (path parameters in braces)."""
        for route in self.wirings[service].routes:
            if route.method == method and _matches(route.path, path):
                return route
        raise KeyError(f"{service} has no route {method} {path}")

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> HttpAnswer:
        """Answer one HTTP request with the route's handler, as the HTTP layer would."""
        route = self.route(service, method, path)
        params = _path_params(route.path, path)
        headers = dict(headers or {})
        if (service, method, path) == ("returns", "POST", "/returns"):
            self._order_for(body)
        if service == "returns" and "Authorization" not in headers:
            headers |= self._signed_in_buyer(path, body)
        request = HttpRequest(body, headers, query or {})
        return await route.handler(request, **params)

    def _signed_in_buyer(self, path: str, body: bytes) -> dict[str, str]:
        """The bearer token of the buyer a returns call is made by (the body's buyer, or
        the return's), signed in just now; none when the request names no buyer."""
        buyer: str | None = None
        if path == "/returns":
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                buyer = json.loads(body).get("buyer_id") or None
        else:
            buyer = self.returns.buyer_of(path.strip("/").split("/")[1])
        return {} if not isinstance(buyer, str) else bearer(buyer, self.clock())

    def _order_for(self, body: bytes) -> None:
        """The marketplace placed and delivered the order a full return body describes
        (the loop's tests state every fact), unless the test placed one itself."""
        with contextlib.suppress(ValueError):  # not JSON: the front door refuses it
            self.orders.place_described(json.loads(body))

    def names(self, topic_suffix: str = "") -> list[str]:
        return [name for topic, name, *_ in self.delivered if topic.endswith(topic_suffix)]


def _matches(pattern: str, path: str) -> bool:
    want, have = pattern.strip("/").split("/"), path.strip("/").split("/")
    return len(want) == len(have) and all(
        w.startswith("{") or w == h for w, h in zip(want, have, strict=True)
    )


def _path_params(pattern: str, path: str) -> dict[str, str]:
    return {
        w[1:-1]: h
        for w, h in zip(pattern.strip("/").split("/"), path.strip("/").split("/"), strict=True)
        if w.startswith("{")
    }


def signed_carrier_callback(body: bytes, now_s: int) -> dict[str, str]:
    return CARRIER_SIGNATURE.signature_headers(CARRIER_SECRET, now_s, body)


def signed_psp_webhook(body: bytes, now_s: int) -> dict[str, str]:
    return PSP_SIGNATURE.signature_headers(PSP_SECRET, now_s, body)


def station_headers(token: str = STATION_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def published(outbound: list[Outbound]) -> list[str]:
    return [record[0] for record in outbound]
