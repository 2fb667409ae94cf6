"""When the oldest record at an offset was written (a thin aiokafka adapter shared by the
front door's admission control, services/returns/pipeline_backlog.py, and `boomerang
lag`, services/tools/oncall/consumer_lag.py)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


async def timestamp_at(reader: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> int | None:
    """The broker timestamp (ms) of the record at `offset` of `tp`, None if there is none
    within 2 s (the reader is assigned `tp` alone)."""
    reader.assign([tp])
    reader.seek(tp, offset)
    batch = await reader.getmany(tp, timeout_ms=2000, max_records=1)
    messages = batch.get(tp, [])
    return messages[0].timestamp if messages else None
