"""Settlement's consumer (an adapter): orders, refunds issued and returns completed, read
from Kafka and booked into the ledger exactly once — every poll's effects and the offsets
it read up to in one PostgreSQL transaction, and on every partition assignment the
consumer seeks to the offsets stored there (never to Kafka's committed ones).

What each record does (the decisions are services/decisions/settlement):
- OrderPlaced / OrderDelivered: the order kept (`orders`), and completions that were
  waiting for it settled now;
- RefundIssued: the refund entry (the money went out through the provider);
- RefundFailed with the provider's decline: kept (`refund_declines`) for reconciliation,
  and when that refund had been booked as issued (a pending transfer that failed) its
  entry is reversed; RefundVoided (a pending refund cancelled) reverses it too;
- DisputeDecided that refunded more: the dispute entry (its payer charged; the refund
  itself is booked from its RefundIssued, by the key `{return_id}-dispute-1`);
- ChargeCaptured (a buyer paid an exchange's difference): the charge entry (the provider
  holds it, the order's seller is owed it);
- ReturnCompleted: its liable party kept (`completions_seen`), and the liability entry (the
  liable party charged), or parked in `pending_completions` until its order comes; one
  that cannot be settled (no liable party, a breakdown that does not add up) goes to
  `settlement_rejects` with the reason;
- a record that cannot be decoded: `settlement_rejects`, with its bytes.
A redelivered record derives the same entry ids and books nothing (services/settlement/
ledger_store.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from services.decisions.refunds.order_model import Liable
from services.decisions.settlement.completed_returns import (
    NotSettleable,
    decided_dispute,
    return_to_settle,
    sold_by_of,
)
from services.decisions.settlement.fx import FxError
from services.decisions.settlement.journal import JournalEntry, LedgerError, Posting
from services.decisions.settlement.return_postings import (
    ReturnToSettle,
    SettlementTerms,
    dispute_entry,
    exchange_charge_entry,
    failed_refund_entry,
    liability_entry,
    refund_entry,
)
from services.engine import loop_metrics
from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.envelope import EnvelopeError, check_envelope
from services.eventing.log_setup import get_logger
from services.eventing.topics import ORDERS, REFUND_EVENTS, SAGA_EVENTS
from services.settlement import settlement_metrics
from services.settlement.cycle_calendar import CycleCalendar
from services.settlement.ledger_store import Booking, LedgerStore

GROUP = "boomerang-settlement"
ORDER_EVENTS = frozenset({"OrderPlaced", "OrderDelivered"})
TOPICS = (ORDERS.name, REFUND_EVENTS.name, SAGA_EVENTS.name)
MAX_RECORDS = 500
STORE_CREDIT = "STORE_CREDIT"
log = get_logger(__name__)


def _json(record: Mapping[str, Any]) -> Jsonb:
    return Jsonb(record, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


class SettlementConsumer:
    def __init__(
        self,
        bootstrap: str,
        conn: AsyncConnection,
        codec: AvroCodec,
        terms: SettlementTerms,
        group: str = GROUP,
        calendar: CycleCalendar | None = None,
        start_at_ms: int | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        # a new ledger reads from this instant (None: from the topics' beginnings)
        self.start_at_ms = start_at_ms
        self.conn = conn
        self.codec = codec
        self.terms = terms
        self.group = group
        self.calendar = calendar or CycleCalendar.from_env()
        self.store = LedgerStore(conn, group)
        self.consumer: AIOKafkaConsumer | None = None
        self.booked = 0
        self.duplicates = 0
        self.read = 0  # records read (booked or not) since this consumer started
        self._batch: list[JournalEntry] = []
        self.positions: dict[tuple[str, int], int] = {}  # next offset, per partition read

    def lag(self) -> dict[tuple[str, int], int]:
        """Records of each assigned partition past what was read (the high watermark last
        fetched minus the next offset): for /metrics."""
        if self.consumer is None:
            return {}
        behind = {}
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            read = self.positions.get((tp.topic, tp.partition))
            if high is not None and read is not None:
                behind[(tp.topic, tp.partition)] = max(0, high - read)
        return behind

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        self.consumer.subscribe(list(TOPICS), listener=_SeekToStoredOffsets(self))
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def poll_once(self, timeout_ms: int = 1000) -> int:
        """Read what is there (up to MAX_RECORDS) and book it; the records handled."""
        assert self.consumer is not None, "start() first"
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=MAX_RECORDS)
        records = sum(len(rs) for rs in batch.values())
        self.read += records
        for tp, messages in batch.items():
            if messages:
                self.positions[(tp.topic, tp.partition)] = messages[-1].offset + 1
        if records:
            try:
                booking = await self.handle(batch)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                # a value the database refuses (a text with NUL, a currency too long): the
                # poll again, record by record, the refused one kept aside
                log.warning("the database refused a record; booking one by one", error=repr(exc))
                booking = await self.handle_one_by_one(batch)
            self.booked += len(booking.booked)
            self.duplicates += len(booking.duplicates)
            settlement_metrics.ENTRIES_BOOKED.inc(len(booking.booked))
            settlement_metrics.ENTRIES_DUPLICATE.inc(len(booking.duplicates))
            for tp, messages in batch.items():
                loop_metrics.RECORDS_CONSUMED.labels(tp.topic, "handled").inc(len(messages))
        return records

    async def handle(self, batch: Mapping[TopicPartition, list[ConsumerRecord]]) -> Booking:
        """One transaction: the poll's orders kept (in one statement), every other record's
        effects in order, then the entries and the offsets."""
        async with self.conn.transaction():
            entries: list[JournalEntry] = []
            self._batch = entries  # a refund failed in the same poll as it was issued
            offsets: dict[tuple[str, int], int] = {}
            orders: list[tuple[ConsumerRecord, str, dict[str, Any]]] = []
            others: list[tuple[ConsumerRecord, str, dict[str, Any]]] = []
            for tp, records in batch.items():
                for message in records:
                    offsets[(tp.topic, tp.partition)] = message.offset + 1
                    checked = await self._checked(message)
                    if checked is None:
                        continue
                    if checked[1] in ORDER_EVENTS:
                        orders.append(checked)
                    else:
                        others.append(checked)
            entries += await self._orders(orders)
            for message, name, record in others:
                entries += await self._effects(message, name, record)
            return await self.store.book(entries, offsets, self.calendar)

    async def handle_one_by_one(
        self, batch: Mapping[TopicPartition, list[ConsumerRecord]]
    ) -> Booking:
        """The poll in one transaction, each record in a savepoint of its own: a record the
        database refuses is kept aside with the reason, the others are booked."""
        booking = Booking()
        async with self.conn.transaction():
            offsets: dict[tuple[str, int], int] = {}
            for tp, records in batch.items():
                for message in records:
                    offsets[(tp.topic, tp.partition)] = message.offset + 1
                    try:
                        async with self.conn.transaction():
                            part = await self.store.book(
                                await self._record_effects(message), {}, self.calendar
                            )
                    except (psycopg.DataError, psycopg.IntegrityError) as exc:
                        await self._reject(message, None, None, f"refused by the database: {exc}")
                        continue
                    booking.booked.extend(part.booked)
                    booking.duplicates.extend(part.duplicates)
            await self.store.book([], offsets, self.calendar)
        return booking

    async def _record_effects(self, message: ConsumerRecord) -> list[JournalEntry]:
        self._batch = []
        checked = await self._checked(message)
        if checked is None:
            return []
        if checked[1] in ORDER_EVENTS:
            return await self._orders([checked])
        entries = await self._effects(*checked)
        self._batch = entries
        return entries

    async def _checked(
        self, message: ConsumerRecord
    ) -> tuple[ConsumerRecord, str, dict[str, Any]] | None:
        """The record decoded and within the event contract, or None (kept aside with the
        reason: never lost)."""
        try:
            decoded = self.codec.decode(message.value)
        except CodecError as exc:  # undecodable bytes: kept with the reason, not lost
            await self._reject(message, None, None, f"not decodable: {exc!r}")
            return None
        name, record = decoded.name, decoded.record
        try:
            check_envelope(name, record, message.key)
        except EnvelopeError as exc:  # decodes, but breaks the contract: kept, not booked
            return_id = record.get("envelope", {}).get("return_id")
            await self._reject(message, name, return_id, f"contract: {exc}")
            return None
        return message, name, record

    async def _effects(
        self, message: ConsumerRecord, name: str, record: dict[str, Any]
    ) -> list[JournalEntry]:
        return_id = record.get("envelope", {}).get("return_id")
        try:
            return await self._dispatch(name, record)
        except NotSettleable as exc:
            if name == "ReturnCompleted" and record.get("refunded") is None:
                return []  # an exchange: nothing was paid, nobody to charge
            await self._reject(message, name, return_id, str(exc))
        except (ValueError, KeyError, TypeError) as exc:  # a record the ledger cannot take
            await self._reject(message, name, return_id, f"cannot be booked: {exc!r}")
        return []

    async def _dispatch(self, name: str, record: Mapping[str, Any]) -> list[JournalEntry]:
        if name == "RefundIssued":
            return self._refund(record)
        if name == "RefundFailed":
            await self._declined(record)
            return await self._failed_after_issued(record)
        if name == "RefundVoided" and record.get("provider_refund_id"):
            pending = record["provider_refund_id"]
            return await self._reversed(record, "provider_reference", pending, "voided")
        if name == "ReturnCompleted":
            await self._completion_seen(record)
            return await self._completion(record)
        if name == "DisputeDecided" and record.get("refund"):
            return await self._dispute(record)
        if name == "ChargeCaptured":
            return await self._exchange_charge(record)
        return []

    async def _failed_after_issued(self, record: Mapping[str, Any]) -> list[JournalEntry]:
        """A refund booked as paid that the provider failed afterwards: its entry reversed
        (a decline of a refund never issued booked nothing: nothing to reverse)."""
        key = record.get("idempotency_key") or ""
        if not key:
            return []
        return await self._reversed(
            record, "merchant_reference", key, record.get("decline_code") or "failed"
        )

    async def _reversed(
        self, record: Mapping[str, Any], reference: str, value: str, why: str
    ) -> list[JournalEntry]:
        """The reversal of the return's refund entry whose `reference` is `value` (booked in
        this poll or before), or nothing when there is none."""
        return_id = record["envelope"]["return_id"]
        found = next(
            (
                e
                for e in self._batch
                if e.step.startswith("refund") and e.references.get(reference) == value
            ),
            None,
        ) or await self._booked_refund(return_id, reference, value)
        if found is None:
            return []
        at_ms = record["envelope"]["occurred_at"]
        return [failed_refund_entry(found, at_ms, why)]

    async def _booked_refund(
        self, return_id: str, reference: str, value: str
    ) -> JournalEntry | None:
        cursor = await self.conn.execute(
            "SELECT entry_id, booked_at, step, refs FROM journal_entries WHERE return_id = %s"
            " AND (step = 'refund' OR step LIKE 'refund:%%') AND refs->>%s = %s LIMIT 1",
            (return_id, reference, value),
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        entry_id, booked_at, step, refs = row
        cursor = await self.conn.execute(
            "SELECT account, amount_minor, currency, line_type, description, sku FROM postings"
            " WHERE entry_id = %s AND booked_at = %s ORDER BY line_no",
            (entry_id, booked_at),
        )
        postings = tuple(
            Posting(account, amount, currency.strip(), line_type, description, sku)
            for account, amount, currency, line_type, description, sku in await cursor.fetchall()
        )
        return JournalEntry(
            str(entry_id), return_id, step, int(booked_at.timestamp() * 1000), postings, None, refs
        )

    async def _declined(self, record: Mapping[str, Any]) -> None:
        """A decline the provider answered: reconciliation checks its report agrees."""
        provider, key = record.get("provider"), record.get("idempotency_key")
        if not (provider and key and record.get("decline_code")):
            return  # not the provider's answer (nothing was sent, or it never answered)
        await self.conn.execute(
            "INSERT INTO refund_declines"
            " (provider, merchant_reference, return_id, decline_code, declined_at)"
            " VALUES (%s, %s, %s, %s, to_timestamp(%s / 1000.0)) ON CONFLICT DO NOTHING",
            (
                provider,
                key,
                record["envelope"]["return_id"],
                record["decline_code"],
                record["envelope"]["occurred_at"],
            ),
        )

    async def _completion_seen(self, record: Mapping[str, Any]) -> None:
        """Who is liable for a completed return: reconciliation looks for the seller's
        debit of every refunded seller-liable one."""
        refunded = record.get("refunded") or {}
        await self.conn.execute(
            "INSERT INTO completions_seen"
            " (return_id, liable, order_ref, refunded, currency, completed_at)"
            " VALUES (%s, %s, %s, %s, %s, to_timestamp(%s / 1000.0)) ON CONFLICT DO NOTHING",
            (
                record["envelope"]["return_id"],
                record.get("liable"),
                record.get("order_ref"),
                refunded.get("amount_minor", 0),
                refunded.get("currency"),
                record["completed_at"],
            ),
        )

    def _refund(self, record: Mapping[str, Any]) -> list[JournalEntry]:
        amount = record["amount"]
        store_credit = record.get("method") == STORE_CREDIT
        entry = refund_entry(
            record["envelope"]["return_id"],
            amount["amount_minor"],
            amount["currency"],
            record["envelope"]["occurred_at"],
            None if store_credit else record["provider"],
            record.get("provider_refund_id") or "",
            record.get("idempotency_key") or "",
        )
        return [] if entry is None else [entry]

    async def _completion(self, record: Mapping[str, Any]) -> list[JournalEntry]:
        order_ref = record.get("order_ref")
        if not order_ref:
            raise NotSettleable("the completion names no order")
        order = await self._known_order(order_ref)
        if order is None:
            await self.conn.execute(
                "INSERT INTO pending_completions (return_id, order_ref, completion)"
                " VALUES (%s, %s, %s) ON CONFLICT (return_id) DO NOTHING",
                (record["envelope"]["return_id"], order_ref, _json(record)),
            )
            return []
        settled = return_to_settle(record, order, record.get("carrier_id"))
        entry = liability_entry(settled, self.terms, record["completed_at"])
        await self._claim_to_file(settled)
        return [] if entry is None else [entry]

    async def _dispute(self, record: Mapping[str, Any]) -> list[JournalEntry]:
        """Who pays for a dispute's refund (the refund itself is booked from its
        RefundIssued); its order must be known by then (the return's own was settled)."""
        order_ref = record.get("order_ref")
        order = await self._known_order(order_ref) if order_ref else None
        if order is None:
            raise NotSettleable(f"the dispute's order {order_ref!r} is not known")
        settled = decided_dispute(record, order)
        return [dispute_entry(settled, self.terms, record["decided_at"])]

    async def _exchange_charge(self, record: Mapping[str, Any]) -> list[JournalEntry]:
        """A buyer's payment for a dearer variant: owed to the order's seller."""
        order_ref = record.get("order_ref")
        order = await self._known_order(order_ref) if order_ref else None
        if order is None:
            raise NotSettleable(f"the charge's order {order_ref!r} is not known")
        amount = record["amount"]
        if amount["currency"] != order["currency"]:
            raise NotSettleable(f"charged in {amount['currency']}, order in {order['currency']}")
        try:
            sold_by = sold_by_of(order, amount["currency"])
        except (FxError, LedgerError) as exc:
            raise NotSettleable(str(exc)) from exc
        entry = exchange_charge_entry(
            record["envelope"]["return_id"],
            amount["amount_minor"],
            amount["currency"],
            record["provider"],
            sold_by,
            record["envelope"]["occurred_at"],
            record["provider_charge_id"],
            record["idempotency_key"],
        )
        return [entry]

    async def _claim_to_file(self, settled: ReturnToSettle) -> None:
        """A carrier-liable return: its claim, to be filed with the carrier (claims_desk)."""
        if settled.liable is not Liable.CARRIER or not settled.charges.refunded:
            return
        await self.conn.execute(
            "INSERT INTO carrier_claims (claim_id, return_id, carrier_id, amount_minor, currency)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                f"CLM-{settled.return_id}",
                settled.return_id,
                settled.carrier_id,
                settled.charges.refunded,
                settled.charges.currency,
            ),
        )

    async def _orders(
        self, orders: list[tuple[ConsumerRecord, str, dict[str, Any]]]
    ) -> list[JournalEntry]:
        """The poll's orders kept in one statement (the latest of each), and the completions
        that were waiting for one of them settled now."""
        rows, kept = [], {}
        for message, name, record in orders:
            try:
                order = record["order"]
                rows.append(
                    (
                        order["order_ref"],
                        order["seller_id"],
                        _json(order),
                        order["placed_at"],
                        record["delivered_at"] if name == "OrderDelivered" else None,
                    )
                )
                kept[order["order_ref"]] = order
            except (KeyError, TypeError) as exc:
                await self._reject(message, name, None, f"cannot be kept: {exc!r}")
        if not rows:
            return []
        async with self.conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO orders (order_ref, seller_id, body, placed_at, delivered_at)"
                " VALUES (%s, %s, %s, to_timestamp(%s / 1000.0), to_timestamp(%s / 1000.0))"
                " ON CONFLICT (order_ref) DO UPDATE SET body = EXCLUDED.body,"
                " delivered_at = COALESCE(EXCLUDED.delivered_at, orders.delivered_at)",
                rows,
            )
            await cursor.execute(
                "DELETE FROM pending_completions WHERE order_ref = ANY(%s)"
                " RETURNING order_ref, completion",
                (list(kept),),
            )
            waiting = await cursor.fetchall()
        entries = []
        for order_ref, completion in waiting:
            try:
                settled = return_to_settle(
                    completion, kept[order_ref], completion.get("carrier_id")
                )
            except NotSettleable as exc:
                log.warning("waiting completion not settleable", reason=str(exc))
                continue
            entry = liability_entry(settled, self.terms, completion["completed_at"])
            await self._claim_to_file(settled)
            entries += [] if entry is None else [entry]
        return entries

    async def _known_order(self, order_ref: str) -> dict[str, Any] | None:
        cursor = await self.conn.execute(
            "SELECT body FROM orders WHERE order_ref = %s", (order_ref,)
        )
        row = await cursor.fetchone()
        return None if row is None else row[0]

    async def _reject(
        self, message: ConsumerRecord, name: str | None, return_id: str | None, reason: str
    ) -> None:
        log.warning("record not settled", topic=message.topic, offset=message.offset, reason=reason)
        settlement_metrics.RECORDS_REJECTED.labels(message.topic).inc()
        payload = message.value
        await self.conn.execute(
            "INSERT INTO settlement_rejects"
            ' (topic, partition, "offset", record_name, return_id, reason, payload)'
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (message.topic, message.partition, message.offset, name, return_id, reason, payload),
        )


class _SeekToStoredOffsets(ConsumerRebalanceListener):
    """On assignment, each partition starts where the ledger says it was read up to."""

    def __init__(self, owner: SettlementConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self.owner.consumer
        assert consumer is not None
        stored = await self.owner.store.stored_offsets()
        new = [tp for tp in assigned if (tp.topic, tp.partition) not in stored]
        first = await self._first_offsets(consumer, new)
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition), first.get(tp))
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)

    async def _first_offsets(
        self, consumer: AIOKafkaConsumer, new: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Where a partition the ledger never read starts: the first record at or after
        `start_at_ms`, or the end when there is none yet (the ends are asked first, so a
        record written in between is found by the time query)."""
        start_at_ms = self.owner.start_at_ms
        if start_at_ms is None or not new:
            return {}
        ends = await consumer.end_offsets(new)
        found = await consumer.offsets_for_times({tp: start_at_ms for tp in new})
        return {tp: found[tp].offset if found.get(tp) else ends[tp] for tp in new}
