"""What the coordinator keeps of an archived saga, and the archive's contract
(saga_archive.py keeps it in SQLite; MemoryArchive in a dict)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from services.decisions.saga.archiving import ARCHIVED_STATUSES
from services.eventing.handler_contract import DomainRejection


@dataclass(frozen=True)
class ArchivedSaga:
    return_id: str
    status: str
    finished_at: int
    view_json: str


class SagaArchive(Protocol):
    def get(self, return_id: str) -> ArchivedSaga | None: ...

    def put(self, saga: ArchivedSaga, partition: int, offset: int) -> None: ...

    # partitions: the rows of those partitions only (None: every row)
    def counts(self, partitions: Collection[int] | None) -> dict[str, int]: ...

    def with_status(
        self, status: str, partitions: Collection[int] | None, limit: int
    ) -> list[str]: ...


class MemoryArchive:
    """The archive in a dict (tests, and a coordinator run without a state directory)."""

    def __init__(self) -> None:
        self.sagas: dict[str, tuple[ArchivedSaga, int]] = {}

    def get(self, return_id: str) -> ArchivedSaga | None:
        found = self.sagas.get(return_id)
        return found[0] if found else None

    def put(self, saga: ArchivedSaga, partition: int, offset: int) -> None:
        self.sagas[saga.return_id] = (saga, partition)

    def counts(self, partitions: Collection[int] | None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for saga, partition in self.sagas.values():
            if partitions is None or partition in partitions:
                counts[saga.status] = counts.get(saga.status, 0) + 1
        return counts

    def with_status(self, status: str, partitions: Collection[int] | None, limit: int) -> list[str]:
        found = [
            saga.return_id
            for saga, partition in self.sagas.values()
            if (partitions is None or partition in partitions) and saga.status == status
        ]
        return sorted(found)[:limit]


def archived_saga(record: dict[str, Any]) -> ArchivedSaga:
    """The archived saga a SagaArchived record holds (DomainRejection for one no saga could
    have been archived as: an unknown status, a view that is not a JSON object)."""
    if record["status"] not in ARCHIVED_STATUSES:
        raise DomainRejection(f"SagaArchived with status {record['status']!r}")
    try:
        view = orjson.loads(record["view_json"])
    except orjson.JSONDecodeError as exc:
        raise DomainRejection(f"SagaArchived whose view is not JSON: {exc}") from exc
    if not isinstance(view, dict):
        raise DomainRejection("SagaArchived whose view is not a JSON object")
    return ArchivedSaga(
        record["envelope"]["return_id"],
        record["status"],
        int(record["finished_at"]),
        record["view_json"],
    )
