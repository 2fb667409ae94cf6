"""The topic catalogue: every topic Boomerang uses, declared once.

Records are keyed by return_id, so all events of one return land on one partition, in order.
Replication is declared for a production cluster (3 replicas, min ISR 2) and capped to the
cluster's size by the bootstrapper (a single local broker gets 1 and 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# partitions per stream topic, its changelogs and dead letters: the most instances a service
# can spread over (docs/scaling.md). Changing it on a running cluster re-keys returns: a
# deployment made with 4 keeps BOOMERANG_TOPIC_PARTITIONS=4 until it migrates.
DEFAULT_PARTITIONS = 12
PARTITIONS = int(os.environ.get("BOOMERANG_TOPIC_PARTITIONS") or DEFAULT_PARTITIONS)
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    purpose: str
    partitions: int = PARTITIONS
    replication_factor: int = 3
    min_insync_replicas: int = 2
    cleanup_policy: str = "delete"
    retention_ms: int = 14 * DAY_MS
    record_types: tuple[str, ...] = ()  # message names written to this topic
    extra_config: dict[str, str] = field(default_factory=dict)

    def config(self, brokers: int) -> dict[str, str]:
        """Topic-level configs for a cluster of `brokers` nodes."""
        config = {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(self.min_insync_replicas_for(brokers)),
            **self.extra_config,
        }
        return config

    def replication_for(self, brokers: int) -> int:
        return max(1, min(self.replication_factor, brokers))

    def min_insync_replicas_for(self, brokers: int) -> int:
        return max(1, min(self.min_insync_replicas, self.replication_for(brokers) - 1))


def _stream(name: str, purpose: str, record_types: tuple[str, ...], days: int = 14) -> TopicSpec:
    return TopicSpec(name, purpose, retention_ms=days * DAY_MS, record_types=record_types)


# Inputs that services consume; each gets a dead-letter topic (transient failures are retried
# in the consume loop, with backoff, not through a topic).
# A topic a view is folded from (engine/state_store.py) keeps its records as long as a return
# can be open: a view rebuilt after a restart must still know every open return (booking 2 h
# + collection 7 d + inspection 14 d + settlement 30 d, then compensation), with a margin.
VIEW_SOURCE_DAYS = 60

RETURNS_EVENTS = _stream(
    "boomerang.returns.events",
    "return requests, their policy outcome and the buyer's cancellations (front door)",
    ("ReturnRequested", "ReturnAccepted", "ReturnRejected", "ReturnCancelled"),
    days=VIEW_SOURCE_DAYS,
)
PICKUP_COMMANDS = _stream(
    "boomerang.pickup.commands",
    "coordinator → pickup: book / cancel / reschedule a pickup, or make it a drop-off",
    ("PickupRequested", "PickupCancelRequested", "PickupRescheduleRequested", "DropOffRequested"),
    days=7,
)
PICKUP_EVENTS = _stream(
    "boomerang.pickup.events",
    "pickup → coordinator: scheduled, attempt failed, rescheduled, completed, cancelled",
    (
        "PickupScheduled",
        "PickupAttemptFailed",
        "PickupRescheduled",
        "DropOffBooked",
        "PickupCompleted",
        "PickupCancelled",
    ),
    days=VIEW_SOURCE_DAYS,
)
INSPECTION_EVENTS = _stream(
    "boomerang.inspection.events",
    "scanners' inspection results",
    ("InspectionRecorded",),
    days=VIEW_SOURCE_DAYS,
)
INTAKE_COMMANDS = _stream(
    "boomerang.intake.commands",
    "coordinator → warehouse-intake: take in / reverse",
    ("IntakeRequested", "IntakeReverseRequested"),
    days=7,
)
INTAKE_EVENTS = _stream(
    "boomerang.intake.events",
    "warehouse-intake → coordinator: stock moved",
    ("IntakeCompleted", "IntakeReversed"),
    days=VIEW_SOURCE_DAYS,
)
STOCK_MOVEMENTS = _stream(
    "boomerang.intake.stock-movements",
    "warehouse-intake → inventory ledger, one record per intake keyed by warehouse_id "
    "(repartitioned; StockMovementRecorded, one per item keyed by sku@location, is older)",
    ("StockMovementsRecorded", "StockMovementRecorded"),
    days=30,
)
REFUND_COMMANDS = _stream(
    "boomerang.refund.commands",
    "coordinator → refund: pay / void / order a replacement (exchange)",
    ("RefundRequested", "RefundVoidRequested", "ReplacementOrderRequested", "ChargeRequested"),
    days=7,
)
ORDER_REFUND_LEDGER = _stream(
    "boomerang.refund.order-ledger",
    "coordinator → the order refund ledger: reserve / release a return's share of its order, "
    "keyed by order_ref (repartitioned)",
    ("RefundReservationRequested", "RefundReservationReleaseRequested"),
    days=30,
)
REFUND_EVENTS = _stream(
    "boomerang.refund.events",
    "refund → coordinator: reserved, issued, settled, failed, voided; replacement placed or "
    "out of stock",
    (
        "RefundReserved",
        "RefundReservationRefused",
        "RefundReservationReleased",
        "RefundIssued",
        "RefundSettled",
        "RefundFailed",
        "RefundVoided",
        "ReplacementOrderPlaced",
        "ReplacementOutOfStock",
        "ChargeCaptured",
        "ChargeFailed",
    ),
    days=VIEW_SOURCE_DAYS,  # the refund service's answers view is folded from it
)
SAGA_EVENTS = _stream(
    "boomerang.saga.events",
    "coordinator's outcomes, timers, requests to the buyer and the buyer's answers (front "
    "door), a person's commands (on call)",
    (
        "ReturnCompleted",
        "ReturnFailed",
        "SagaStepTimedOut",
        "BuyerDetailsRequested",
        # not on returns.events, which the coordinator pauses while busy (admission): a
        # step of a return already taken must not wait behind new ones (at 4× the offer a
        # bank account waited p95 28 s there, RefundReserved → RefundRequested, stop 35);
        # the saga takes it in any order (early details are kept, decisions/saga). Records
        # of it written on returns.events before are still handled there.
        "BuyerDetailsProvided",
        "PickupWindowRequested",  # the buyer's, from the front door (as BuyerDetailsProvided)
        "PersonalDataErasureRequested",  # the buyer's, from the front door
        "DropOffChosen",  # the buyer's, from the front door
        "DisputeRequested",  # the buyer's, from the front door
        "DisputeOpened",
        "ReinspectionRequested",  # to the inspection service (which follows this topic)
        "DisputeRuled",  # an agent's, from the cases service
        "DisputeDecided",
        "SagaRetryRequested",
        "SagaCancelRequested",
        "SagaResumeRequested",
    ),
    days=VIEW_SOURCE_DAYS,
)
# A finished saga's summary once its working state is removed (coordinator); compacted:
# the latest per return is kept (for as long as the records of a return must be kept)
SAGA_ARCHIVE = TopicSpec(
    "boomerang.saga.archive",
    "coordinator → itself: finished sagas past their retention, as GET /returns/{id} shows "
    "them (compacted, one per return)",
    cleanup_policy="compact",
    retention_ms=-1,
    record_types=("SagaArchived",),
)
# The marketplace's order system (its double here): orders as placed and delivered, keyed
# by order_ref; each record carries the whole order, so compaction keeps the latest per
# order, and retention drops an order once no return or settlement can refer to it
# (return window + inspection + settlement cycles, with a margin).
ORDER_RETENTION_DAYS = 400
ORDERS = TopicSpec(
    "boomerang.marketplace.orders",
    "marketplace → settlement (and risk, the front door): orders placed and delivered, "
    "keyed by order_ref (compacted, then deleted after ORDER_RETENTION_DAYS)",
    cleanup_policy="compact,delete",
    retention_ms=ORDER_RETENTION_DAYS * DAY_MS,
    record_types=("OrderPlaced", "OrderDelivered"),
)
SUPPORT_TICKETS = _stream(
    "boomerang.support.tickets",
    "cases a person must decide",
    ("TicketOpened",),
    days=90,
)
CASE_EVENTS = _stream(
    "boomerang.support.cases",
    "cases → itself: a support case assigned, escalated, closed (keyed by return)",
    ("CaseAssigned", "CaseEscalated", "CaseClosed"),
    days=90,
)
NOTIFICATION_EVENTS = _stream(
    "boomerang.notifications.events",
    "notifications → itself: a message the provider took, or a failed send and when it is "
    "tried again (the outbox's durable steps, keyed by return)",
    ("NotificationsSettled", "NotificationSent", "NotificationFailed"),
    days=VIEW_SOURCE_DAYS,
)

# Risk: the saga asks before money moves; the answers and reviewers' verdicts come back.
RISK_COMMANDS = _stream(
    "boomerang.risk.commands",
    "coordinator → risk: decide on a return before its refund",
    ("RiskCheckRequested",),
    days=7,
)
RISK_EVENTS = _stream(
    "boomerang.risk.events",
    "risk → coordinator: decisions (with the shadow rule set's, not acted on) and reviewers' "
    "verdicts",
    ("RiskDecided", "RiskReviewDecided"),
    days=VIEW_SOURCE_DAYS,  # the risk service's decisions and cases are folded from it
)
# What each order, return and inspection adds to one buyer's, seller's, SKU's, address's or
# order's rolling counts, keyed by subject:key (repartitioned). Kept as long as the longest
# window a rule reads, with a margin (decisions/risk/return_features.HORIZON_DAYS), so the
# windows can be rebuilt from it.
RISK_COUNTS_RETENTION_DAYS = 400
RISK_COUNTS = _stream(
    "boomerang.risk.counts",
    "risk → itself: rolling-count increments keyed by subject:key (repartitioned)",
    ("RiskCounted",),
    days=RISK_COUNTS_RETENTION_DAYS,
)

# Sellers' standings per market (seller governance), keyed by seller_id|market, compacted:
# the latest is the standing the front door applies; kept while a seller may be flagged.
RISK_SELLERS = TopicSpec(
    "boomerang.risk.sellers",
    "risk → the front door, reviewers: sellers' standings per market (watch, probation, "
    "good again), keyed by seller_id|market (compacted)",
    cleanup_policy="compact",
    retention_ms=-1,
    record_types=("SellerFlagged",),
)

# Buyers whose return was held or declined, keyed by buyer_id|market: the front door
# tightens their policy until the record's day (standing_policy.BUYER_TIGHTENED_DAYS, after
# which compaction's deletion forgets them).
RISK_BUYERS = TopicSpec(
    "boomerang.risk.buyers",
    "risk → the front door: buyers held or declined, whose policy is tightened for a while "
    "(keyed by buyer_id|market, compacted, then deleted)",
    cleanup_policy="compact,delete",
    retention_ms=120 * DAY_MS,
    record_types=("BuyerFlagged",),
)

STREAMS: tuple[TopicSpec, ...] = (
    RETURNS_EVENTS,
    PICKUP_COMMANDS,
    PICKUP_EVENTS,
    INSPECTION_EVENTS,
    INTAKE_COMMANDS,
    INTAKE_EVENTS,
    STOCK_MOVEMENTS,
    REFUND_COMMANDS,
    ORDER_REFUND_LEDGER,
    REFUND_EVENTS,
    SAGA_EVENTS,
    SAGA_ARCHIVE,
    ORDERS,
    SUPPORT_TICKETS,
    CASE_EVENTS,
    NOTIFICATION_EVENTS,
    RISK_COMMANDS,
    RISK_EVENTS,
    RISK_COUNTS,
    RISK_SELLERS,
    RISK_BUYERS,
)


def dead_letter_topic(stream: TopicSpec) -> TopicSpec:
    return TopicSpec(
        f"{stream.name}.dlq",
        f"records of {stream.name} that could not be processed",
        retention_ms=max(30 * DAY_MS, stream.retention_ms),
    )


def _changelog(app_id: str, table: str, purpose: str) -> TopicSpec:
    # A table's changelog is "{group id}-{table}-changelog"; partitions match the inputs'.
    return TopicSpec(
        f"{app_id}-{table}-changelog", purpose, cleanup_policy="compact", retention_ms=-1
    )


SAGA_CHANGELOG = _changelog("boomerang-coordinator", "sagas", "saga state per return (compacted)")
# Tables whose durable form is a topic already written are views without a changelog
# (engine/state_store.py): returns' answers, pickup's answers, inspection's returns and
# scans, intake's intakes, refund's answers.
SERVICE_CHANGELOGS = (
    _changelog("boomerang-warehouse-intake", "ledger", "inventory ledger per sku@warehouse"),
    _changelog("boomerang-refund", "refund-routes", "the provider each refund key reached"),
    _changelog("boomerang-refund", "order-ledger", "live returns' refund shares per order"),
    _changelog("boomerang-risk", "windows", "rolling counts per subject:key (risk features)"),
    _changelog("boomerang-risk", "returns", "each return's request and what risk counted of it"),
    _changelog("boomerang-risk", "orders", "the orders risk counted"),
    _changelog("boomerang-notifications", "outboxes", "each return's notifications to send"),
)
# Tables every instance reads whole (not partitioned with a service's inputs): compacted,
# kept while any record may name a key (a digest names one policy, so keys stay few).
POLICY_SNAPSHOTS = TopicSpec(
    "boomerang.policy.snapshots",
    "returns → everyone: each effective policy a return was accepted under, once, keyed by "
    "its digest (ReturnAccepted names the digest)",
    partitions=1,
    cleanup_policy="compact",
    retention_ms=-1,
    record_types=("PolicySnapshotPublished",),
)
GLOBAL_TABLES: tuple[TopicSpec, ...] = (POLICY_SNAPSHOTS,)
OPERATIONS_AUDIT = TopicSpec(
    "boomerang.operations.audit",
    "who replayed / redrove / purged what, when and why",
    partitions=1,
    retention_ms=365 * DAY_MS,
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    *STREAMS,
    *(dead_letter_topic(s) for s in STREAMS),
    SAGA_CHANGELOG,
    *SERVICE_CHANGELOGS,
    *GLOBAL_TABLES,
    OPERATIONS_AUDIT,
)


def topic_for_record(record_name: str) -> TopicSpec:
    for spec in (*STREAMS, *GLOBAL_TABLES):
        if record_name in spec.record_types:
            return spec
    raise KeyError(f"no topic carries {record_name}")


def by_name(name: str) -> TopicSpec:
    for spec in ALL_TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(f"topic {name} is not declared")
