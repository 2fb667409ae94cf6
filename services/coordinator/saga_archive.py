"""Archived sagas on disk: what GET /returns/{id} shows of a finished saga once its working
state has left the sagas table, and how the coordinator knows a late event's return was
archived (it is ignored, not started again).

The compacted topic boomerang.saga.archive is the durable form (one SagaArchived per
return); each coordinator instance keeps the records of its partitions in an SQLite file
under BOOMERANG_STATE_DIR, with the next offset to read per partition. On assignment it
reads each arriving partition from there to the end (a file from an earlier run of the same
instance continues where it stopped), then takes new records as they are consumed. Memory
stays flat however many sagas were archived: the file grows, the process does not. The file
is a copy of the topic: deleting it costs one read of the topic, nothing else. A file made
when the topic had another partition count (before `boomerang topics migrate`) names
partitions and offsets that are no longer there: it is emptied and read again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.coordinator.archived_sagas import ArchivedSaga, archived_saga
from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.log_setup import get_logger

log = get_logger(__name__)


SCHEMA = """
CREATE TABLE IF NOT EXISTS archived (
    return_id TEXT PRIMARY KEY,
    partition INTEGER NOT NULL,
    status TEXT NOT NULL,
    finished_at INTEGER NOT NULL,
    view_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS archived_by_status ON archived (partition, status, return_id);
CREATE TABLE IF NOT EXISTS positions (
    partition INTEGER PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS topic (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    partitions INTEGER NOT NULL
);
"""


class SqliteArchive:
    """The archive in an SQLite file (opened on first use: nothing is touched at import)."""

    def __init__(self, path: Path, partitions: int) -> None:
        self.path = path
        self.partitions = partitions  # the archive topic's partition count
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None)
            # a copy of the topic: no fsync per write (a lost write is read again)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")
            db.executescript(SCHEMA)
            row = db.execute("SELECT partitions FROM topic").fetchone()
            if row is not None and row[0] != self.partitions:
                log.warning(
                    "archive file made for another partition count: read again",
                    file=str(self.path),
                    partitions_then=row[0],
                    partitions_now=self.partitions,
                )
                db.executescript("DELETE FROM archived; DELETE FROM positions;")
            db.execute("INSERT OR REPLACE INTO topic VALUES (1, ?)", (self.partitions,))
            self._db = db
        return self._db

    def get(self, return_id: str) -> ArchivedSaga | None:
        row = self.db.execute(
            "SELECT return_id, status, finished_at, view_json FROM archived WHERE return_id = ?",
            (return_id,),
        ).fetchone()
        return ArchivedSaga(*row) if row else None

    def put(self, saga: ArchivedSaga, partition: int, offset: int) -> None:
        self.put_many([(saga, partition, offset)])

    def put_many(self, sagas: list[tuple[ArchivedSaga, int, int]]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO archived VALUES (?, ?, ?, ?, ?)",
                [
                    (s.return_id, partition, s.status, s.finished_at, s.view_json)
                    for s, partition, _ in sagas
                ],
            )
            db.executemany(
                "INSERT INTO positions VALUES (?, ?) ON CONFLICT (partition) "
                "DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                [(partition, offset + 1) for _, partition, offset in sagas if offset >= 0],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def next_offset(self, partition: int) -> int:
        row = self.db.execute(
            "SELECT next_offset FROM positions WHERE partition = ?", (partition,)
        ).fetchone()
        return int(row[0]) if row else 0

    def counts(self, partitions: Collection[int] | None) -> dict[str, int]:
        where, numbers = _of_partitions(partitions)
        rows = self.db.execute(
            f"SELECT status, count(*) FROM archived WHERE {where} GROUP BY status", numbers
        ).fetchall()
        return {status: count for status, count in rows}

    def with_status(self, status: str, partitions: Collection[int] | None, limit: int) -> list[str]:
        where, numbers = _of_partitions(partitions)
        rows = self.db.execute(
            f"SELECT return_id FROM archived WHERE {where} AND status = ? "
            "ORDER BY return_id LIMIT ?",
            [*numbers, status, limit],
        ).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _of_partitions(partitions: Collection[int] | None) -> tuple[str, list[int]]:
    """A WHERE clause for the rows of `partitions` (None: every row), and its values."""
    if partitions is None:
        return "1", []
    numbers = sorted(partitions)
    return f"partition IN ({','.join('?' * len(numbers)) or 'NULL'})", numbers


async def catch_up(
    archive: SqliteArchive,
    bootstrap: str,
    topic: str,
    partitions: Collection[int],
    codec: AvroCodec,
) -> int:
    """Read `partitions` of the archive topic from the archive's positions to their end;
    how many records were read (a record that does not decode is skipped: the consume loop
    dead-letters it)."""
    if not partitions:
        return 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    read = 0
    try:
        tps = [TopicPartition(topic, number) for number in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        pending = {}
        for tp in tps:
            start = max(archive.next_offset(tp.partition), starts[tp])
            if start < ends[tp]:
                consumer.seek(tp, start)
                pending[tp] = ends[tp]
            else:
                consumer.pause(tp)
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
            rows = []
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset >= pending[tp]:
                        continue
                    try:  # what the consume loop dead-letters is not kept here either
                        decoded = codec.decode(message.value)
                        saga = archived_saga(decoded.record)
                    except (CodecError, KeyError, TypeError, ValueError):
                        continue
                    if message.key != saga.return_id.encode():
                        continue
                    rows.append((saga, tp.partition, message.offset))
            for tp in list(pending):  # compaction leaves gaps: the position says it all
                if await consumer.position(tp) >= pending[tp]:
                    del pending[tp]
            if rows:
                archive.put_many(rows)
                read += len(rows)
    finally:
        await consumer.stop()
    if read:
        log.info("archived sagas read", records=read, partitions=sorted(partitions))
    return read
