"""The engine's pure bookkeeping: which offsets may be committed, and what a checkpoint
writes, persists and holds back."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.engine.offset_tracking import OffsetProgress, PartitionProgress
from services.engine.state_store import (
    APPLIED_HEADER,
    Handling,
    StateStore,
    StateWriteOutsideRecord,
    TopicView,
    handling,
)
from services.engine.stored_value import Settled


@given(st.data(), st.lists(st.integers(1, 3), min_size=1, max_size=40))
def test_the_committable_position_is_the_end_of_the_contiguous_done_prefix(data, gaps):
    offsets = []
    offset = 0
    for gap in gaps:  # offsets with holes, as compaction and markers leave them
        offset += gap
        offsets.append(offset)
    progress = PartitionProgress()
    for o in offsets:
        progress.fetched(o)
    order = data.draw(st.permutations(offsets))
    done: set[int] = set()
    for o in order:
        progress.done(o)
        done.add(o)
        prefix = [x for x in offsets if all(y in done for y in offsets if y <= x)]
        expected = prefix[-1] + 1 if prefix else None
        assert progress.position == expected
    assert progress.outstanding == 0 and progress.position == offsets[-1] + 1


def test_offsets_must_be_fetched_in_order_and_done_once():
    progress = PartitionProgress()
    progress.fetched(5)
    with pytest.raises(ValueError):
        progress.fetched(5)
    progress.done(5)
    with pytest.raises(ValueError):
        progress.done(5)


def test_progress_per_partition_and_forgetting_revoked_ones():
    progress = OffsetProgress()
    progress.fetched("t", 0, 10)
    progress.fetched("t", 1, 3)
    progress.done("t", 1, 3)
    assert progress.committable() == {("t", 1): 4}
    assert progress.outstanding() == 1 and progress.outstanding(1) == 0
    progress.forget({0})
    assert progress.outstanding() == 0


def write(store: StateStore, table: str, key: str, value: object, offset: int, topic: str = "in"):
    with handling(Handling(key, topic, 0, offset)):
        store.tables[table][key] = value


def test_a_table_cannot_be_written_outside_a_record():
    store = StateStore()
    table = store.table("sagas", "sagas-changelog")
    with pytest.raises(StateWriteOutsideRecord):
        table["R-1"] = {}


def test_a_key_changed_many_times_is_written_once_per_checkpoint_with_its_applied_offsets():
    store = StateStore()
    store.table("sagas", "sagas-changelog")
    for offset in (3, 7, 9):
        write(store, "sagas", "R-1", {"n": offset}, offset)
    writes = store.checkpoint_writes()
    assert len(writes) == 1
    assert orjson.loads(writes[0].value) == {"n": 9}
    # the writer is the entry's own key, so the stamp leaves it out
    assert dict(writes[0].headers)[APPLIED_HEADER] == orjson.dumps({"at": {"in": 9}})
    assert store.commit_floor() == {("in", 0): 3}
    store.persisted(writes)
    assert store.commit_floor() == {} and store.checkpoint_writes() == []


def test_an_entry_written_by_another_key_names_its_writer_and_older_stamps_still_restore():
    store = StateStore()
    store.table("ledger", "ledger-changelog")
    with handling(Handling("INTAKE-1", "in", 0, 4)):
        store.tables["ledger"]["SKU-1@A"] = {"on_hand": 1}
    (write_,) = store.checkpoint_writes()
    stamp = orjson.loads(dict(write_.headers)[APPLIED_HEADER])
    assert stamp == {"at": {"in": 4}, "key": "INTAKE-1"}
    recovered = StateStore()
    recovered.table("ledger", "ledger-changelog")
    recovered.restore("ledger", 0, write_.key, write_.value, write_.headers)
    # a stamp written before the key was left out names it, whoever wrote it
    older = orjson.dumps({"key": "R-9", "at": {"in": 12}})
    recovered.restore("ledger", 0, orjson.dumps("R-9"), b"{}", [(APPLIED_HEADER, older)])
    recovered.restored()
    assert recovered.already_applied("INTAKE-1", "in", 4)
    assert not recovered.already_applied("SKU-1@A", "in", 0)
    assert recovered.already_applied("R-9", "in", 12)
    assert not recovered.already_applied("R-9", "in", 13)


def test_an_entry_changed_while_its_checkpoint_is_written_stays_dirty_from_that_change_on():
    store = StateStore()
    store.table("sagas", "sagas-changelog")
    write(store, "sagas", "R-1", {"n": 1}, 1)
    writes = store.checkpoint_writes()
    write(store, "sagas", "R-1", {"n": 2}, 5)
    store.persisted(writes)
    assert store.commit_floor() == {("in", 0): 5}


def test_a_key_with_a_record_in_flight_waits_and_holds_the_commit_back():
    store = StateStore()
    store.table("sagas", "sagas-changelog")
    write(store, "sagas", "R-1", {"n": 1}, 4)
    store.started("R-1")
    assert store.checkpoint_writes() == []
    assert store.commit_floor() == {("in", 0): 4}
    store.finished("R-1")
    assert len(store.checkpoint_writes()) == 1


def test_recovery_restores_values_and_skips_records_the_state_already_took():
    source = StateStore()
    source.table("sagas", "sagas-changelog")
    write(source, "sagas", "R-1", {"n": 1}, 11)
    write(source, "sagas", "R-2", {"n": 2}, 12)
    changelog = source.checkpoint_writes()
    source.persisted(changelog)
    with handling(Handling("R-2", "in", 0, 13)):
        del source.tables["sagas"]["R-2"]
    changelog += source.checkpoint_writes()
    recovered = StateStore()
    recovered.table("sagas", "sagas-changelog")
    for w in changelog:
        recovered.restore("sagas", w.partition, w.key, w.value, w.headers)
    assert recovered.tables["sagas"].reloads == 0
    recovered.restored()
    assert recovered.tables["sagas"].reloads == 1  # an index beside the table rebuilds
    assert recovered.tables["sagas"].values == {"R-1": {"n": 1}}
    assert dict(recovered.tables["sagas"].items()) == {"R-1": {"n": 1}}
    assert recovered.already_applied("R-1", "in", 11)
    assert not recovered.already_applied("R-1", "in", 12)
    assert recovered.already_applied("R-2", "in", 13)  # a tombstone keeps its stamp
    assert not recovered.already_applied("R-1", "other", 0)


def test_a_key_two_tables_wrote_is_applied_up_to_the_table_that_is_behind():
    # a crash between the two tables' checkpoint writes: the second one misses record 8
    source = StateStore()
    for name in ("answers", "routes"):
        source.table(name, f"{name}-changelog")
    write(source, "answers", "R-1", {"n": 1}, 7)
    write(source, "routes", "R-1", {"n": 1}, 7)
    first = source.checkpoint_writes()
    source.persisted(first)
    write(source, "answers", "R-1", {"n": 2}, 8)
    write(source, "routes", "R-1", {"n": 2}, 8)
    second = [w for w in source.checkpoint_writes() if w.topic == "answers-changelog"]
    recovered = StateStore()
    for name in ("answers", "routes"):
        recovered.table(name, f"{name}-changelog")
    for w in first + second:
        recovered.restore(w.entry[0], w.partition, w.key, w.value, w.headers)
    recovered.restored()
    assert recovered.already_applied("R-1", "in", 7)
    assert not recovered.already_applied("R-1", "in", 8)  # handled again, not lost


def test_dropping_a_partition_forgets_its_keys():
    store = StateStore()
    store.table("sagas", "sagas-changelog")
    write(store, "sagas", "R-1", {"n": 1}, 1)
    store.drop_partitions({0})
    assert store.tables["sagas"].values == {} and store.dirty == {} and store.applied == {}
    assert store.tables["sagas"].reloads == 1


def test_an_entry_born_and_gone_between_two_checkpoints_writes_nothing():
    store = StateStore()
    store.table("views", "views-changelog")
    write(store, "views", "R-1", {"n": 1}, 1)
    with handling(Handling("R-1", "in", 0, 2)):
        del store.tables["views"]["R-1"]
    assert store.checkpoint_writes() == [] and store.commit_floor() == {}


def test_an_entry_in_the_changelog_that_goes_is_written_as_a_tombstone():
    store = StateStore()
    store.table("views", "views-changelog")
    write(store, "views", "R-1", {"n": 1}, 1)
    store.persisted(store.checkpoint_writes())
    with handling(Handling("R-1", "in", 0, 2)):
        del store.tables["views"]["R-1"]
    (tombstone,) = store.checkpoint_writes()
    assert tombstone.value is None


def test_a_table_written_less_often_waits_for_its_interval_or_a_stop():
    store = StateStore()
    store.table("ledger", "ledger-changelog", every_s=60.0)
    store.table("sagas", "sagas-changelog")
    write(store, "ledger", "SKU-1@A", {"on_hand": 1}, 1)
    write(store, "sagas", "R-1", {"n": 1}, 2)
    first = store.checkpoint_writes(now=100.0, everything=False)
    assert {w.entry[0] for w in first} == {"ledger", "sagas"}  # never written yet: due
    store.persisted(first)
    write(store, "ledger", "SKU-1@A", {"on_hand": 2}, 3)
    assert store.checkpoint_writes(now=130.0, everything=False) == []
    assert store.commit_floor() == {("in", 0): 3}  # the commit waits for it
    assert len(store.checkpoint_writes(now=130.0, everything=True)) == 1


def test_a_live_value_is_written_as_its_stored_form_and_restored_as_that_json():
    class Live:
        def __init__(self, n: int) -> None:
            self.n = n

        def stored_json(self) -> dict:
            return {"n": self.n, "form": "stored"}

    source = StateStore()
    source.table("sagas", "sagas-changelog")
    write(source, "sagas", "R-1", Live(3), 1)
    [changelog] = source.checkpoint_writes()
    recovered = StateStore()
    recovered.table("sagas", "sagas-changelog")
    recovered.restore("sagas", 0, changelog.key, changelog.value, changelog.headers)
    recovered.restored()
    assert recovered.tables["sagas"].values == {"R-1": {"n": 3, "form": "stored"}}


def test_a_settled_value_is_written_as_its_bytes_and_restored_settled_when_labelled():
    finished = {"status": "COMPLETED", "history": ["x"] * 300}  # large enough to deflate
    source = StateStore()
    source.table("sagas", "sagas-changelog")
    settled = Settled.of(finished, "COMPLETED")
    write(source, "sagas", "R-1", settled, 1)
    write(source, "sagas", "R-2", {"status": "PICKUP_SCHEDULED"}, 2)
    writes = source.checkpoint_writes()
    assert {w.key: w.value for w in writes}[orjson.dumps("R-1")] == settled.stored
    recovered = StateStore()

    def settles(value: dict, stored: bytes) -> Settled | None:
        return Settled(stored, value["status"]) if value["status"] == "COMPLETED" else None

    recovered.table("sagas", "sagas-changelog", settles=settles)
    for w in writes:
        recovered.restore("sagas", w.partition, w.key, w.value, w.headers)
    recovered.restored()
    assert recovered.tables["sagas"]["R-1"] == settled
    assert recovered.tables["sagas"]["R-1"].stored_json() == finished
    assert recovered.tables["sagas"]["R-2"] == {"status": "PICKUP_SCHEDULED"}


MINUTE_MS = 60_000


def written_at(store: StateStore, table: str, key: str, value: object, offset: int, at_ms: int):
    with handling(Handling(key, "in", 0, offset, at_ms)):
        store.tables[table][key] = value


def test_a_view_forgets_an_entry_its_retention_after_the_last_change_and_writes_nothing():
    store = StateStore()
    store.view("answers", TopicView(("in",), lambda *_: None), retention_ms=MINUTE_MS)
    written_at(store, "answers", "R-1", {"n": 1}, 1, at_ms=1_000)
    written_at(store, "answers", "R-2", {"n": 1}, 2, at_ms=2_000)
    written_at(store, "answers", "R-1", {"n": 2}, 3, at_ms=30_000)  # changed again: kept longer
    assert store.expire(now_ms=1_000 + MINUTE_MS) == 0
    assert store.expire(now_ms=2_000 + MINUTE_MS) == 1
    assert list(store.tables["answers"]) == ["R-1"]
    assert store.expire(now_ms=30_000 + MINUTE_MS) == 1
    assert store.tables["answers"].values == {} and store.tables["answers"].changed_at == {}
    assert store.checkpoint_writes() == []
    store.prune_applied()
    assert store.partition_of == {}


def test_a_table_entry_past_its_retention_becomes_a_tombstone_that_holds_no_commit_back():
    store = StateStore()
    store.table("routes", "routes-changelog", retention_ms=MINUTE_MS)
    written_at(store, "routes", "R-1", {"psp": "a"}, 7, at_ms=1_000)
    store.persisted(store.checkpoint_writes())
    assert store.expire(now_ms=1_000 + MINUTE_MS) == 1
    assert store.commit_floor() == {}
    (tombstone,) = store.checkpoint_writes()
    assert tombstone.value is None and tombstone.partition == 0
    # the key's applied offsets are stamped as they were: a restore skips what it took
    assert orjson.loads(dict(tombstone.headers)[APPLIED_HEADER]) == {"at": {"in": 7}}
    store.persisted([tombstone])
    assert store.dirty == {} and "R-1" not in store.tables["routes"]


def test_an_entry_never_persisted_that_expires_writes_nothing():
    store = StateStore()
    store.table("routes", "routes-changelog", retention_ms=MINUTE_MS)
    written_at(store, "routes", "R-1", {"psp": "a"}, 7, at_ms=1_000)
    store.expire(now_ms=1_000 + MINUTE_MS)
    assert store.checkpoint_writes() == []


def test_a_key_with_a_record_in_flight_does_not_expire_until_it_is_done():
    store = StateStore()
    store.view("answers", TopicView(("in",), lambda *_: None), retention_ms=MINUTE_MS)
    written_at(store, "answers", "R-1", {"n": 1}, 1, at_ms=1_000)
    store.started("R-1")
    assert store.expire(now_ms=10 * MINUTE_MS) == 0
    store.finished("R-1")
    assert store.expire(now_ms=10 * MINUTE_MS) == 1


def test_a_restored_entry_expires_from_its_changelog_time_a_table_without_retention_never():
    store = StateStore()
    store.table("routes", "routes-changelog", retention_ms=MINUTE_MS)
    store.table("ledger", "ledger-changelog")
    stamp = [(APPLIED_HEADER, orjson.dumps({"at": {"in": 3}}))]
    store.restore("routes", 0, orjson.dumps("R-1"), b'{"psp":"a"}', stamp, 5_000)
    store.restore("ledger", 0, orjson.dumps("SKU@A"), b'{"on_hand":1}', stamp, 5_000)
    store.restored()
    assert store.expire(now_ms=5_000 + MINUTE_MS - 1) == 0
    assert store.expire(now_ms=5_000 + MINUTE_MS) == 1
    assert "SKU@A" in store.tables["ledger"] and store.expire(now_ms=10**12) == 0


def test_dropping_a_partition_forgets_when_its_keys_changed():
    store = StateStore()
    store.view("answers", TopicView(("in",), lambda *_: None), retention_ms=MINUTE_MS)
    written_at(store, "answers", "R-1", {"n": 1}, 1, at_ms=1_000)
    store.drop_partitions({0})
    assert store.tables["answers"].changed_at == {}


@given(st.lists(st.tuples(st.sampled_from("ABCDE"), st.integers(0, 10 * MINUTE_MS)), max_size=40))
def test_after_an_expiry_pass_no_entry_older_than_the_retention_is_left(changes):
    store = StateStore()
    store.view("answers", TopicView(("in",), lambda *_: None), retention_ms=MINUTE_MS)
    clock = 0
    last: dict[str, int] = {}
    for offset, (key, step) in enumerate(changes):
        clock += step // 40  # record times move forward
        written_at(store, "answers", key, offset, offset, at_ms=clock + 1)
        last[key] = clock + 1
    now = clock + MINUTE_MS // 2
    store.expire(now)
    assert set(store.tables["answers"]) == {k for k, t in last.items() if t > now - MINUTE_MS}
