"""A service made only to test the engine's contract on a real broker, run as an OS process.

It reads `<run>.in` (SagaRetryRequested records keyed K-n), keeps per key a table entry
listing every input offset it applied (a fold that is visibly wrong if it takes a record
twice or loses one), and answers each input with a TicketOpened on `<run>.out` whose event
id is derived from the input's. `python -m tests.support.engine_probe RUN PORT`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from services.decisions.event_ids import deterministic_event_id, envelope_of
from services.engine import worker
from services.engine.settings import ServiceSettings
from services.eventing.handler_contract import Incoming, Outbound, Subscription, Wiring
from services.eventing.topics import TopicSpec

PARTITIONS = 4


def topics(run: str) -> list[TopicSpec]:
    return [
        TopicSpec(f"{run}.in", "probe input", partitions=PARTITIONS),
        TopicSpec(f"{run}.in.dlq", "probe dead letters", partitions=PARTITIONS),
        TopicSpec(f"{run}.out", "probe output", partitions=PARTITIONS),
        TopicSpec(
            f"boomerang-{run}-applied-changelog",
            "probe state",
            partitions=PARTITIONS,
            cleanup_policy="compact",
            retention_ms=-1,
        ),
    ]


def input_record(key: str, number: int) -> dict[str, Any]:
    envelope = envelope_of(
        "SagaRetryRequested",
        key,
        "probe",
        event_id=deterministic_event_id("probe-input", key, str(number)),
        occurred_at=1_790_000_000_000 + number,
    )
    return {
        "envelope": envelope,
        "requested_by": "probe",
        "reason": str(number),
        "operation_id": "",
    }


def answer(incoming: Incoming) -> Outbound:
    envelope = envelope_of(
        "TicketOpened",
        incoming.return_id,
        "probe",
        event_id=deterministic_event_id(incoming.event_id, "TicketOpened"),
        occurred_at=incoming.envelope["occurred_at"],
        causation_id=incoming.event_id,
    )
    facts = {"input_offset": str(incoming.offset), "partition": str(incoming.partition)}
    return "TicketOpened", {
        "envelope": envelope,
        "ticket_id": incoming.event_id,
        "category": "probe",
        "summary": incoming.record["reason"],
        "facts": facts,
    }


def build(run: str, port: int, bootstrap: str) -> worker.ServiceParts:
    settings = ServiceSettings(
        service=run,
        web_port=port,
        bootstrap=bootstrap,
        checkpoint_interval_s=float(os.environ.get("PROBE_CHECKPOINT_S", "0.2")),
        checkpoint_idle_s=float(os.environ.get("PROBE_CHECKPOINT_S", "0.2")),
        session_timeout_s=6.0,
        static_membership=True,
        instance_id=os.environ.get("PROBE_INSTANCE", "1"),  # a second probe shares the group
    )
    parts = worker.build_parts(settings)
    parts.producer.topic_of = lambda name: f"{run}.out"
    applied = parts.table("applied")

    async def apply(incoming: Incoming) -> list[Outbound]:
        entry = applied.get(incoming.return_id) or {"offsets": []}
        applied[incoming.return_id] = {"offsets": [*entry["offsets"], incoming.offset]}
        return [answer(incoming)]

    worker.serve(parts, Wiring((Subscription("probe", (f"{run}.in",), apply),)))
    worker.add_health_page(parts)
    return parts


def main() -> int:
    run, port = sys.argv[1], int(sys.argv[2])
    parts = build(run, port, os.environ["KAFKA_BOOTSTRAP_SERVERS"])
    import asyncio

    from services.eventing.log_setup import configure_logging

    configure_logging(run)
    return asyncio.run(worker.run_until_stopped(parts))


if __name__ == "__main__":
    raise SystemExit(main())
