"""The coordinator's archive file (an SQLite copy of the archive topic)."""

from __future__ import annotations

from pathlib import Path

from services.coordinator.archived_sagas import ArchivedSaga
from services.coordinator.saga_archive import SqliteArchive


def saga(return_id: str) -> ArchivedSaga:
    return ArchivedSaga(return_id, "COMPLETED", 1_700_000_000_000, '{"status": "COMPLETED"}')


def test_the_file_keeps_sagas_and_the_next_offset_per_partition_across_opens(tmp_path: Path):
    archive = SqliteArchive(tmp_path / "a.db", partitions=12)
    archive.put_many([(saga("R-1"), 3, 10), (saga("R-2"), 3, 11), (saga("R-3"), 5, 0)])
    archive.close()
    again = SqliteArchive(tmp_path / "a.db", partitions=12)
    assert again.get("R-2") == saga("R-2")
    assert (again.next_offset(3), again.next_offset(5), again.next_offset(7)) == (12, 1, 0)
    assert again.counts({3}) == {"COMPLETED": 2} and again.counts(None) == {"COMPLETED": 3}


def test_a_file_made_for_another_partition_count_is_emptied_and_read_again(tmp_path: Path):
    before = SqliteArchive(tmp_path / "a.db", partitions=4)
    before.put_many([(saga("R-1"), 3, 10)])
    before.close()
    migrated = SqliteArchive(tmp_path / "a.db", partitions=12)
    assert migrated.get("R-1") is None and migrated.next_offset(3) == 0
    migrated.put_many([(saga("R-1"), 9, 0)])
    migrated.close()
    assert SqliteArchive(tmp_path / "a.db", partitions=12).next_offset(9) == 1
