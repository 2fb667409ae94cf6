"""The audit trail of on-call operations on `boomerang.operations.audit` (JSON records).

Every write (replay, rewind, redrive, purge, saga retry/cancel/resume) is recorded with who
ran it, when, why, what it selected, what its dry run predicted and what it did; a record it writes
carries the same who/when/why in its headers (`stamp_headers`). `audit_event` and
`stamp_headers` are pure; `record` and `read_trail` are thin aiokafka adapters.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from services.eventing.envelope import now_ms
from services.eventing.settings import bootstrap_servers
from services.eventing.topics import OPERATIONS_AUDIT
from services.tools.oncall.topic_reader import read_topic

ACTOR_VARIABLE = "BOOMERANG_OPERATOR"


def current_actor() -> str:
    """Who is running the command: $BOOMERANG_OPERATOR, else user@host."""
    return os.environ.get(ACTOR_VARIABLE) or f"{getpass.getuser()}@{socket.gethostname()}"


def new_operation_id() -> str:
    """A fresh id for one operation (a UUID)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Operation:
    """One on-call write as the audit trail names it: what, its id, who runs it and why."""

    name: str
    reason: str
    operation_id: str = field(default_factory=new_operation_id)
    actor: str = field(default_factory=current_actor)


def stamp_headers(
    prefix: str,
    headers: Iterable[tuple[str, bytes]],
    operation_id: str,
    actor: str,
    reason: str,
    at_ms: int,
    source: str,
) -> list[tuple[str, bytes]]:
    """`headers` without an earlier stamp under `prefix`, plus who/when/why/where from."""
    kept = [(k, v) for k, v in headers if not k.startswith(prefix)]
    return [
        *kept,
        (f"{prefix}operation.id", operation_id.encode()),
        (f"{prefix}by", actor.encode()),
        (f"{prefix}at", str(at_ms).encode()),
        (f"{prefix}reason", reason.encode("utf-8", "replace")),
        (f"{prefix}source", source.encode()),
    ]


def audit_event(
    operation: Operation,
    at_ms: int,
    outcome: str,
    selection: dict[str, Any],
    predicted: dict[str, Any] | None,
    result: dict[str, Any],
) -> dict[str, Any]:
    """One audit record. `outcome`: completed | interrupted | refused | failed."""
    return {
        "operation_id": operation.operation_id,
        "operation": operation.name,
        "actor": operation.actor,
        "reason": operation.reason,
        "at": datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds"),
        "at_ms": at_ms,
        "outcome": outcome,
        "selection": selection,
        "dry_run_prediction": predicted,
        "result": result,
    }


async def record(bootstrap: str, event: dict[str, Any]) -> None:
    """Write one audit event (acknowledged by every in-sync replica)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            OPERATIONS_AUDIT.name,
            json.dumps(event, sort_keys=True).encode(),
            key=event["operation_id"].encode(),
            headers=[("content-type", b"application/json")],
        )
    finally:
        await producer.stop()


async def read_trail(bootstrap: str) -> list[dict[str, Any]]:
    """Every audit record, oldest first."""
    records = await read_topic(bootstrap, OPERATIONS_AUDIT.name, OPERATIONS_AUDIT.partitions)
    trail = []
    for message in records:
        try:
            trail.append(json.loads(message.value))
        except (TypeError, ValueError):
            continue
    return trail


def record_now(
    operation: Operation,
    outcome: str,
    selection: dict[str, Any],
    predicted: dict[str, Any] | None,
    result: dict[str, Any],
) -> dict[str, Any]:
    """Record an operation that just ran (from synchronous command code)."""
    event = audit_event(operation, now_ms(), outcome, selection, predicted, result)
    asyncio.run(record(bootstrap_servers(), event))
    return event
