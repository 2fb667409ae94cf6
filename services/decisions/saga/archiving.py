"""When a finished saga's working state goes, and what is kept of it (pure).

A finished saga stays in the coordinator's table for `finished_retention_ms` after its last
change (late events, operator look-ups); then it is archived: its view as GET /returns/{id}
shows it becomes a SagaArchived record, and the table entry is removed, so the table holds
running sagas and recently finished ones only, whatever the age of the deployment.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.decisions.event_ids import deterministic_event_id, envelope_of
from services.decisions.saga.state import TERMINAL, SagaConfig, SagaState, Status

ARCHIVED_BY = "coordinator"
ARCHIVED_STATUSES = frozenset(str(status) for status in TERMINAL - {Status.NEEDS_ATTENTION})


def archive_at(state: SagaState, config: SagaConfig) -> int | None:
    """When `state` may be archived: None while it runs, and while it waits for a person
    (NEEDS_ATTENTION ends only with an operator's retry, cancel or resume)."""
    return archive_time(str(state.status), state.updated_at, config)


def archive_time(status: str, updated_at: int, config: SagaConfig) -> int | None:
    if status not in ARCHIVED_STATUSES:
        return None
    return updated_at + config.finished_retention_ms


def archived_record(
    return_id: str, status: str, finished_at: int, view: dict[str, Any], now_ms: int
) -> dict[str, Any]:
    """The SagaArchived record of a finished saga; its event id derives from the return and
    the time it finished, so archiving it again is the same event."""
    return {
        "envelope": envelope_of(
            "SagaArchived",
            return_id,
            ARCHIVED_BY,
            event_id=deterministic_event_id(return_id, "archived", str(finished_at)),
            occurred_at=now_ms,
        ),
        "status": status,
        "finished_at": finished_at,
        "view_json": orjson.dumps(view).decode(),
    }


def archived_view(view_json: str, status: str, finished_at: int) -> dict[str, Any]:
    """GET /returns/{id} of an archived saga: its view as it was, marked archived."""
    view = orjson.loads(view_json)
    return {**view, "status": status, "archived": True, "finished_at": finished_at}
