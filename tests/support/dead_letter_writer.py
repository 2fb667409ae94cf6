"""Dead letters written the way the services write them (headers from dead_letter_headers)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from services.eventing.dead_letters import FailedRecord, dead_letter_headers
from services.eventing.event_publisher import producer_settings


async def write_dead_letters(
    bootstrap: str,
    original_topic: str,
    reason: str,
    values: list[bytes],
    key: bytes,
    service: str = "test",
) -> None:
    """One letter per value on `<original_topic>.dlq`, failed with `reason`."""

    class Rejected(ValueError):
        pass

    Rejected.reason = reason  # type: ignore[attr-defined]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        for offset, value in enumerate(values):
            failed = FailedRecord(original_topic, 1, offset, key, value)
            headers = dead_letter_headers(failed, Rejected("the test's poison"), service)
            await producer.send_and_wait(
                f"{original_topic}.dlq", value=value, key=key, headers=headers
            )
    finally:
        await producer.stop()
