"""A service's state: in-memory tables per input partition, checkpointed to compacted
changelogs at most once per key per checkpoint.

A table is written only while a record is handled (the engine sets `handling`), and a
key's entry lives on that record's partition: changelog partition = input partition.
A view is a table without a changelog: its durable form is topics written anyway (a
service's own answers, or the inputs it folds), so it is rebuilt on assignment by folding
those topics' records of the assigned partitions (changelog_recovery.rebuild_views) and
never written to Kafka; it holds no commit back and stamps nothing.

Every changelog record carries, in its `boomerang.applied` header, the key of the input
record that last wrote it (left out when it is the entry's own key) and that key's offset
per input topic. Recovery reads the
changelog of each assigned partition to its end and so knows, per key, the last input
record its state reflects; a record at or below it (re-delivered after a crash, before its
offset was committed) is skipped: state never takes one record twice, and the commit
never passes a change that is not in a changelog (`commit_floor`).

A table or view given a retention forgets an entry that long after its last change
(`StateStore.expire`): entries are kept in the order they were last changed, so a pass
reads only the expired ones. A view just drops it; a table writes its tombstone at the
next checkpoint (time, not an input record, removed it: the key's applied offsets stay).
"""

from __future__ import annotations

import time
from collections.abc import Callable, ItemsView, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.engine.stored_value import Settled, Settles, stored_value, value_of

APPLIED_HEADER = "boomerang.applied"


@dataclass(frozen=True)
class Handling:
    """The input record being handled: where its writes go and what they are stamped with."""

    key: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int = 0  # the record's timestamp (0: now), when an entry it writes expires from


_HANDLING: ContextVar[Handling | None] = ContextVar("handling", default=None)


@contextmanager
def handling(record: Handling) -> Iterator[None]:
    token = _HANDLING.set(record)
    try:
        yield
    finally:
        _HANDLING.reset(token)


@dataclass(frozen=True)
class TopicView:
    """How a view is rebuilt: `fold(view, record name, record)` for each record of `topics`
    (co-partitioned with the service's inputs: same key, same partition count), oldest
    first. A fold must give the same entry the handlers write, and take a record twice
    without harm (records after the committed offset are handled again)."""

    topics: tuple[str, ...]
    fold: Callable[[MutableMapping[str, Any], str, dict[str, Any]], None]


class StateWriteOutsideRecord(RuntimeError):
    """A table was written outside the handling of a record (e.g. from an HTTP handler):
    its change could not be tied to an input offset, so it would not survive a restart."""


@dataclass
class ChangelogWrite:
    topic: str
    partition: int
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]
    entry: tuple[str, str]  # (table, key)
    version: int


@dataclass
class _Dirty:
    version: int
    writer: str  # the key of the record that wrote it last
    partition: int
    first_unpersisted: dict[str, int]  # input topic → offset of the first unpersisted write
    # while a checkpoint is writing this entry: the writes made since its snapshot
    after_snapshot: dict[str, int] | None = None


class StateTable(MutableMapping[str, Any]):
    """A mapping of JSON values by str key; see the module doc for when it may be written."""

    def __init__(
        self,
        store: StateStore,
        name: str,
        changelog: str,
        every_s: float | None = None,
        view: TopicView | None = None,
        settles: Settles | None = None,
        retention_ms: int | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.changelog = changelog  # "" for a view
        self.view = view
        # written at most this often (None: at every checkpoint): a table whose keys each
        # change many times a minute (the inventory ledger) writes each key once a minute
        self.every_s = every_s
        # a restored value it makes Settled is kept so (its changelog bytes, a label)
        self.settles = settles
        self.written_at = 0.0
        self.values: dict[str, Any] = {}
        # bumped when entries are loaded or dropped other than by a handler (a recovery, a
        # revoked partition): an index kept beside the table knows to rebuild
        self.reloads = 0
        # an entry is forgotten this long after its last change (None: kept until deleted)
        self.retention_ms = retention_ms
        # key → when it last changed (ms), oldest first (a change moves the key to the end)
        self.changed_at: dict[str, int] = {}

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def items(self) -> ItemsView[str, Any]:  # the dict's own view (no lookup per key)
        return self.values.items()

    def __len__(self) -> int:
        return len(self.values)

    def __setitem__(self, key: str, value: Any) -> None:
        record = self._changing(key)
        self.values[key] = value
        if self.retention_ms is not None:
            self.changed_at.pop(key, None)
            stamp = record.timestamp_ms if record is not None else 0
            self.changed_at[key] = stamp or _now_ms()

    def __delitem__(self, key: str) -> None:
        self._changing(key)
        del self.values[key]
        self.changed_at.pop(key, None)

    def _changing(self, key: str) -> Handling | None:
        record = _HANDLING.get()
        if self.view is None:
            self.store.changing(self, key)
        elif record is not None:  # a view only learns where keys live
            self.store.partition_of[key] = record.partition
        return record

    def expired_keys(self, now_ms: int, busy: dict[str, int]) -> list[str]:
        """The keys unchanged for the retention, oldest first (a key with a record in
        flight is kept; the pass stops at the first key still young)."""
        if self.retention_ms is None:
            return []
        cutoff = now_ms - self.retention_ms
        expired = []
        for key, changed in self.changed_at.items():
            if changed > cutoff:
                break
            if key not in busy:
                expired.append(key)
        return expired


@dataclass
class StateStore:
    """Every table of one service, their dirty entries and what each key has applied."""

    tables: dict[str, StateTable] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)  # key → input partition
    applied: dict[str, dict[str, int]] = field(default_factory=dict)  # key → topic → offset
    dirty: dict[tuple[str, str], _Dirty] = field(default_factory=dict)
    busy: dict[str, int] = field(default_factory=dict)  # key → records being handled
    in_changelog: set[tuple[str, str]] = field(default_factory=set)  # entries with a value there
    # during recovery: key → table → topic → offset its latest changelog record reflects
    restoring: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    versions: int = 0

    def table(
        self,
        name: str,
        changelog: str,
        every_s: float | None = None,
        settles: Settles | None = None,
        retention_ms: int | None = None,
    ) -> StateTable:
        table = self.tables[name] = StateTable(
            self, name, changelog, every_s, settles=settles, retention_ms=retention_ms
        )
        return table

    def view(self, name: str, view: TopicView, retention_ms: int | None = None) -> StateTable:
        table = self.tables[name] = StateTable(self, name, "", view=view, retention_ms=retention_ms)
        return table

    def changelog_tables(self) -> dict[str, StateTable]:
        return {name: table for name, table in self.tables.items() if table.view is None}

    # -- while handling ---------------------------------------------------------------

    def changing(self, table: StateTable, key: str) -> None:
        record = _HANDLING.get()
        if record is None:
            raise StateWriteOutsideRecord(
                f"table {table.name!r} written outside the handling of a record (key {key!r})"
            )
        self.versions += 1
        entry = (table.name, key)
        dirty = self.dirty.get(entry)
        if dirty is None:
            dirty = self.dirty[entry] = _Dirty(0, record.key, record.partition, {})
        dirty.version = self.versions
        dirty.writer = record.key
        dirty.first_unpersisted.setdefault(record.topic, record.offset)
        if dirty.after_snapshot is not None:
            dirty.after_snapshot.setdefault(record.topic, record.offset)
        self.partition_of[key] = self.partition_of[record.key] = record.partition
        self.applied.setdefault(record.key, {})[record.topic] = record.offset

    def expire(self, now_ms: int) -> int:
        """Forget every entry past its table's retention; how many. A view's entry just goes;
        a table's becomes a dirty tombstone stamped with its key's applied offsets as they
        are (no input record wrote it, so it holds no commit back)."""
        forgotten = 0
        for table in self.tables.values():
            for key in table.expired_keys(now_ms, self.busy):
                del table.changed_at[key]
                if table.values.pop(key, _ABSENT) is _ABSENT:
                    continue
                forgotten += 1
                if table.view is not None or (partition := self.partition_of.get(key)) is None:
                    continue
                self.versions += 1
                entry = (table.name, key)
                dirty = self.dirty.get(entry)
                if dirty is None:
                    self.dirty[entry] = _Dirty(self.versions, key, partition, {})
                else:
                    dirty.version = self.versions
        return forgotten

    def already_applied(self, key: str, topic: str, offset: int) -> bool:
        """The state reflects this record already (re-delivered after a restart)."""
        return offset <= self.applied.get(key, {}).get(topic, -1)

    def started(self, key: str) -> None:
        self.busy[key] = self.busy.get(key, 0) + 1

    def finished(self, key: str) -> None:
        left = self.busy[key] - 1
        if left:
            self.busy[key] = left
        else:
            del self.busy[key]

    # -- checkpoints ------------------------------------------------------------------

    def checkpoint_writes(self, now: float = 0.0, everything: bool = True) -> list[ChangelogWrite]:
        """The changelog records of every dirty entry whose writer has no record in flight
        (an entry mid-way through a record waits for the next checkpoint). Unless
        `everything` (a stop, a rebalance), a table with `every_s` is left out until that
        long after its last write (`now`: a monotonic clock)."""
        due = {
            name
            for name, table in self.tables.items()
            if everything or table.every_s is None or now - table.written_at >= table.every_s
        }
        for name in due:
            self.tables[name].written_at = now
        writes = []
        for (name, key), dirty in list(self.dirty.items()):
            if dirty.writer in self.busy or name not in due:
                continue
            table = self.tables[name]
            value = table.values.get(key, _ABSENT)
            if value is _ABSENT and (name, key) not in self.in_changelog:
                del self.dirty[(name, key)]  # born and gone between two checkpoints
                continue
            stamp: dict[str, Any] = {"at": self.applied.get(dirty.writer, {})}
            if dirty.writer != key:  # the writer's key is the entry's unless said otherwise
                stamp["key"] = dirty.writer
            dirty.after_snapshot = {}
            writes.append(
                ChangelogWrite(
                    table.changelog,
                    dirty.partition,
                    orjson.dumps(key),
                    None if value is _ABSENT else _stored_bytes(value),
                    [(APPLIED_HEADER, orjson.dumps(stamp))],
                    (name, key),
                    dirty.version,
                )
            )
        return writes

    def persisted(self, writes: list[ChangelogWrite]) -> None:
        """These writes are on the broker: their entries are clean unless changed since."""
        for write in writes:
            dirty = self.dirty.get(write.entry)
            if dirty is None:
                continue
            if write.value is None:
                self.in_changelog.discard(write.entry)
            else:
                self.in_changelog.add(write.entry)
            if dirty.version == write.version:
                del self.dirty[write.entry]
            else:  # changed while being written: only the later changes are unpersisted
                dirty.first_unpersisted = dirty.after_snapshot or {}
                dirty.after_snapshot = None

    def checkpoint_failed(self, writes: list[ChangelogWrite]) -> None:
        for write in writes:
            if (dirty := self.dirty.get(write.entry)) is not None:
                dirty.after_snapshot = None

    def commit_floor(self) -> dict[tuple[str, int], int]:
        """Per input (topic, partition): the lowest offset whose change is not persisted;
        the commit must not pass it."""
        floor: dict[tuple[str, int], int] = {}
        for dirty in self.dirty.values():
            for topic, offset in dirty.first_unpersisted.items():
                tp = (topic, dirty.partition)
                floor[tp] = min(offset, floor.get(tp, offset))
        return floor

    # -- recovery and revocation ------------------------------------------------------

    def restore(
        self,
        name: str,
        partition: int,
        key: bytes,
        value: bytes | None,
        headers: Any,
        timestamp_ms: int = 0,
    ) -> None:
        """One changelog record of `partition` read during recovery (in changelog order)."""
        table = self.tables[name]
        decoded_key = orjson.loads(key)
        self.partition_of[decoded_key] = partition
        table.changed_at.pop(decoded_key, None)
        if value is None:
            table.values.pop(decoded_key, None)
            self.in_changelog.discard((name, decoded_key))
        else:
            if table.retention_ms is not None:
                table.changed_at[decoded_key] = timestamp_ms or _now_ms()
            decoded = value_of(value)
            settled = table.settles(decoded, value) if table.settles else None
            table.values[decoded_key] = decoded if settled is None else settled
            self.in_changelog.add((name, decoded_key))
        for header, raw in headers or ():
            if header == APPLIED_HEADER:
                stamp = orjson.loads(raw)
                writer = stamp.get("key", decoded_key)
                self.partition_of[writer] = partition
                per_table = self.restoring.setdefault(writer, {}).setdefault(name, {})
                for topic, offset in stamp["at"].items():
                    per_table[topic] = max(offset, per_table.get(topic, -1))

    def restored(self) -> None:
        """Recovery has read every changelog: a key's applied offset per input topic is the
        lowest over the tables its records wrote. A crash between two tables' checkpoint
        writes leaves one behind; its records are then handled again (handlers dedupe)
        rather than skipped and lost to the table that missed them."""
        for writer, tables in self.restoring.items():
            applied = self.applied.setdefault(writer, {})
            lowest: dict[str, int] = {}
            for offsets in tables.values():
                for topic, offset in offsets.items():
                    lowest[topic] = min(offset, lowest.get(topic, offset))
            for topic, offset in lowest.items():
                applied[topic] = max(offset, applied.get(topic, -1))
        self.restoring.clear()
        for table in self.tables.values():
            table.reloads += 1

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget the state of partitions this process no longer owns."""
        gone = {key for key, number in self.partition_of.items() if number in partitions}
        for table in self.tables.values():
            dropped = gone & table.values.keys()
            for key in dropped:
                del table.values[key]
                table.changed_at.pop(key, None)
            table.reloads += bool(dropped)  # an index beside it rebuilds only if it lost keys
            self.in_changelog -= {(table.name, key) for key in gone}
        for key in gone:
            del self.partition_of[key]
            self.applied.pop(key, None)
        for entry in [e for e, d in self.dirty.items() if d.partition in partitions]:
            del self.dirty[entry]

    def prune_applied(self) -> None:
        """Keys whose state is gone from every table need no stamp (memory stays bounded)."""
        live = set().union(*(table.values.keys() for table in self.tables.values()))
        writers = {dirty.writer for dirty in self.dirty.values()}
        for key in [k for k in self.partition_of if k not in live]:
            if key not in self.busy and key not in writers:
                self.applied.pop(key, None)
                del self.partition_of[key]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _stored_bytes(value: Any) -> bytes:
    """A value's changelog form (stored_value: JSON, deflated when large), or, for an object
    with `stored_json()` (kept in memory as the object a handler works on, made into its
    stored form only here, at checkpoint), that method's JSON; what is restored is always
    that JSON. A Settled value is its changelog form already."""
    if isinstance(value, Settled):
        return value.stored
    return stored_value(value, default=_stored_form)


def _stored_form(value: Any) -> Any:
    stored_json = getattr(value, "stored_json", None)
    if stored_json is None:
        raise TypeError(f"a table value of type {type(value).__name__} has no stored form")
    return stored_json()


class _Absent:
    pass


_ABSENT = _Absent()
