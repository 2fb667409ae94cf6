"""One input record, handled to the end: decoded, checked, given to its subscription's
handler (transient failures retried with backoff), and its effects — the records the
handler returned, or a dead letter saying why there are none — on the broker.

Only this record's key waits meanwhile: the consume loop runs other keys concurrently.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

from services.engine import loop_metrics
from services.engine.producer import RecordProducer
from services.engine.settings import ServiceSettings
from services.engine.state_store import Handling, StateStore, handling
from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.dead_letters import FailedRecord, dead_letter_headers, dead_letter_topic_name
from services.eventing.envelope import EnvelopeError, check_envelope
from services.eventing.handler_contract import (
    DomainRejection,
    Incoming,
    Outbound,
    Subscription,
    TransientFailure,
    UnhandledError,
)
from services.eventing.log_setup import event_context, get_logger

log = get_logger(__name__)


def record_key(message: Any) -> str:
    return message.key.decode("utf-8", "replace") if message.key is not None else ""


class RecordHandling:
    def __init__(
        self,
        settings: ServiceSettings,
        codec: AvroCodec,
        producer: RecordProducer,
        store: StateStore,
        slots: asyncio.Semaphore,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.producer = producer
        self.store = store
        self.slots = slots  # bounds the handlers running at once (partner calls included)
        self.skipped_as_applied = 0  # re-read records the state had taken already

    async def handle(self, message: Any, subscription: Subscription) -> None:
        async with self.slots:
            effects = await self._effects(message, subscription)
        if effects:
            await self.producer.deliver(effects)

    async def _effects(self, message: Any, subscription: Subscription) -> list[tuple]:
        """The encoded records this input leads to (its outputs or its dead letter)."""
        if subscription.accepts is not None and self._not_for(subscription, message.value):
            loop_metrics.passed_over(message.topic, "not_for_service")
            return []
        try:
            decoded = self.codec.decode(message.value)
            check_envelope(
                decoded.name,
                decoded.record,
                key=message.key if subscription.keyed_by_return else None,
            )
        except (CodecError, EnvelopeError) as exc:
            return [self.dead_letter(message, exc)]
        key = record_key(message) or decoded.record["envelope"]["return_id"]
        if self.store.already_applied(key, message.topic, message.offset):
            log.debug("record already in the state; skipped", offset=message.offset)
            self.skipped_as_applied += 1
            loop_metrics.passed_over(message.topic, "skipped_applied")
            return []
        incoming = Incoming(
            decoded.name,
            decoded.record,
            message.key,
            message.topic,
            message.partition,
            message.offset,
        )
        position = Handling(
            key, message.topic, message.partition, message.offset, message.timestamp or 0
        )
        with event_context(decoded.record["envelope"], topic=message.topic), handling(position):
            started = time.perf_counter()
            try:
                outbound = await self._outbound(incoming, subscription)
            except (DomainRejection, TransientFailure, UnhandledError) as exc:
                return [self.dead_letter(message, exc)]
            try:
                encoded = self.producer.encode(outbound)
            except (CodecError, EnvelopeError, KeyError) as exc:  # the handler built a bad record
                log.exception("handler produced an invalid record")
                return [self.dead_letter(message, UnhandledError(f"{type(exc).__name__}: {exc}"))]
            loop_metrics.handled(
                message.topic,
                decoded.name,
                time.perf_counter() - started,
                decoded.record["envelope"].get("return_id"),
            )
            return encoded

    def _not_for(self, subscription: Subscription, value: Any) -> bool:
        """A record of a type the subscription does not act on, told by its schema
        fingerprint without decoding the body (a frame that does not say is decoded, and
        dead-lettered if it is bad)."""
        try:
            writer = self.codec.writer_schema(value)
        except CodecError:
            return False
        return writer.name not in (subscription.accepts or ())

    async def _outbound(self, incoming: Incoming, subscription: Subscription) -> Sequence[Outbound]:
        delay = self.settings.retry_base_delay_s
        attempts = self.settings.retry_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await subscription.handler(incoming)
            except (DomainRejection, UnhandledError):
                raise
            except TransientFailure as exc:
                if attempt == attempts:
                    if subscription.on_exhausted is None:
                        raise
                    log.warning("transient failure outlived its retries", error=str(exc))
                    return await subscription.on_exhausted(incoming, exc)
                pause = min(delay, self.settings.retry_max_delay_s) * random.uniform(0.5, 1.5)
                log.warning(
                    "transient failure, retrying",
                    attempt=attempt,
                    error=str(exc),
                    retry_in_s=round(pause, 2),
                )
                await asyncio.sleep(pause)
                delay *= 2
            except Exception as exc:
                # A bug met by this record: park it where a person can redrive it after the
                # fix, rather than stopping the loop or skipping it silently.
                log.exception("unexpected error while handling an event")
                raise UnhandledError(f"{type(exc).__name__}: {exc}") from exc
        return []

    def dead_letter(self, message: Any, error: BaseException) -> tuple:
        record = FailedRecord(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            headers=tuple((k, bytes(v)) for k, v in (message.headers or ())),
        )
        log.warning(
            "dead-lettered",
            dlq=dead_letter_topic_name(record.topic),
            error_class=type(error).__name__,
            error=str(error)[:300],
            source_partition=record.partition,
            source_offset=record.offset,
        )
        loop_metrics.dead_lettered(record.topic, type(error).__name__)
        headers = dead_letter_headers(record, error, self.settings.service)
        return (dead_letter_topic_name(record.topic), record.key, record.value, headers)
