"""The engine's contract on the real broker: commits never pass an unfinished record, a kill
between produce and commit re-delivers with the state taking each record once, and after
kills at many points the state equals a replay of the input.

The engine runs as an OS process (tests/support/engine_probe.py) killed with SIGKILL, or in
this process for the commit test, whose handler the test holds back.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.engine.consume_loop import ConsumeLoop
from services.engine.producer import RecordProducer
from services.engine.settings import ServiceSettings
from services.engine.state_store import StateStore
from services.engine.stored_value import value_of
from services.eventing.avro_codec import AvroCodec
from services.eventing.handler_contract import Incoming, Subscription, TransientFailure
from services.eventing.topic_bootstrap import bootstrap_topics
from services.tools.local_stack.stack import free_port
from services.tools.oncall.topic_reader import read_topic
from tests.support import engine_probe

REPO = Path(__file__).resolve().parents[2]
KEYS = [f"K-{n:02d}" for n in range(24)]


def new_run() -> str:
    return f"probe-{uuid.uuid4().hex[:8]}"


async def produce_inputs(bootstrap: str, codec: AvroCodec, run: str, numbers: range) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = []
        for number in numbers:
            key = KEYS[number % len(KEYS)]
            value = codec.encode("SagaRetryRequested", engine_probe.input_record(key, number))
            futures.append(await producer.send(f"{run}.in", value=value, key=key.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list:
    return await read_topic(bootstrap, topic, engine_probe.PARTITIONS)


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        return {
            p: (await consumer.committed(TopicPartition(topic, p))) or 0
            for p in range(engine_probe.PARTITIONS)
        }
    finally:
        await consumer.stop()


def start_probe(bootstrap: str, run: str, port: int, tmp: Path, **env: str) -> subprocess.Popen:
    log = open(tmp / f"{run}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.engine_probe", run, str(port)],
        cwd=REPO,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stop(process: subprocess.Popen, how: int) -> None:
    process.send_signal(how)
    process.wait(timeout=60)


def applied_state(bootstrap: str, run: str) -> dict[str, list[int]]:
    state: dict[str, list[int]] = {}
    for message in asyncio.run(read_all(bootstrap, f"boomerang-{run}-applied-changelog")):
        state[orjson.loads(message.key)] = value_of(message.value)["offsets"]
    return state


def input_offsets(bootstrap: str, run: str) -> dict[str, list[int]]:
    offsets: dict[str, list[int]] = {}
    for message in sorted(asyncio.run(read_all(bootstrap, f"{run}.in")), key=lambda m: m.offset):
        offsets.setdefault(message.key.decode(), []).append(message.offset)
    return offsets


def drain_and_stop(bootstrap: str, run: str, port: int, tmp: Path, total: int) -> None:
    """Run the probe until every input is committed, then stop it gracefully."""
    process = start_probe(bootstrap, run, port, tmp)
    try:

        def all_committed() -> bool:
            done = asyncio.run(committed(bootstrap, f"boomerang-{run}", f"{run}.in"))
            return sum(done.values()) == total

        wait_until(all_committed, 120, "every input committed")
    finally:
        stop(process, signal.SIGTERM)


def in_process_loop(
    bootstrap: str, codec: AvroCodec, run: str, handler, offsets=None
) -> tuple[ConsumeLoop, RecordProducer]:
    """A consume loop in this process over `<run>.in`, answering on `<run>.out`."""
    settings = ServiceSettings(
        run, 0, bootstrap=bootstrap, checkpoint_interval_s=0.1, retry_base_delay_s=0.01
    )
    records = RecordProducer(bootstrap, run, codec, topic_of=lambda name: f"{run}.out")
    subscriptions = [Subscription("probe", (f"{run}.in",), handler)]
    loop = ConsumeLoop(
        settings, subscriptions, codec, records, StateStore(), lambda exc: None, offsets
    )
    return loop, records


@pytest.fixture
def probe_run(kafka_bootstrap: str) -> str:
    run = new_run()
    asyncio.run(bootstrap_topics(kafka_bootstrap, engine_probe.topics(run)))
    return run


def test_a_kill_between_produce_and_commit_redelivers_and_the_state_takes_each_record_once(
    kafka_bootstrap: str, codec: AvroCodec, probe_run: str, tmp_path: Path
):
    run, port, total = probe_run, free_port(), 200
    asyncio.run(produce_inputs(kafka_bootstrap, codec, run, range(total)))
    # checkpoints far apart: every output is written, nothing is committed, then SIGKILL
    process = start_probe(kafka_bootstrap, run, port, tmp_path, PROBE_CHECKPOINT_S="600")
    try:
        wait_until(
            lambda: len(asyncio.run(read_all(kafka_bootstrap, f"{run}.out"))) >= total,
            60,
            "an answer to every input",
        )
        assert (
            sum(asyncio.run(committed(kafka_bootstrap, f"boomerang-{run}", f"{run}.in")).values())
            == 0
        )
    finally:
        stop(process, signal.SIGKILL)
    drain_and_stop(kafka_bootstrap, run, port, tmp_path, total)

    answers = Counter(m.headers[2][1] for m in asyncio.run(read_all(kafka_bootstrap, f"{run}.out")))
    assert len(answers) == total  # one distinct answer (event id) per input
    assert set(answers.values()) == {2}  # each re-delivered once, with the same event id
    assert applied_state(kafka_bootstrap, run) == input_offsets(kafka_bootstrap, run)


def test_after_kills_at_many_points_the_state_equals_a_replay_of_the_input(
    kafka_bootstrap: str, codec: AvroCodec, probe_run: str, tmp_path: Path
):
    run, port = probe_run, free_port()
    rng = random.Random(int(os.environ.get("ENGINE_KILL_SEED", "1807")))
    produced = 0
    kill_points = []
    for _ in range(12):
        chunk = rng.randint(20, 80)
        asyncio.run(produce_inputs(kafka_bootstrap, codec, run, range(produced, produced + chunk)))
        produced += chunk
        process = start_probe(kafka_bootstrap, run, port, tmp_path)
        if rng.random() < 0.7:
            wait_until(lambda: ready(port), 60, "the probe ready")
        pause = rng.uniform(0.0, 1.5)
        kill_points.append(round(pause, 2))
        time.sleep(pause)
        stop(process, signal.SIGKILL)
    drain_and_stop(kafka_bootstrap, run, port, tmp_path, produced)

    expected = input_offsets(kafka_bootstrap, run)
    assert applied_state(kafka_bootstrap, run) == expected, f"kill points {kill_points}"
    answered = {m.headers[2][1] for m in asyncio.run(read_all(kafka_bootstrap, f"{run}.out"))}
    assert len(answered) == produced  # no input lost its answer


def owned_by(port: int) -> set[int]:
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
    except httpx.HTTPError:
        return set()
    return set(health.get("partitions") or ())


def test_an_instance_put_out_of_the_group_and_back_continues_from_what_the_owner_did(
    kafka_bootstrap: str, codec: AvroCodec, probe_run: str, tmp_path: Path
):
    """Two instances in one group. The first stops answering heartbeats (SIGSTOP) past its
    session: the second owns every partition and applies inputs. The first comes back
    (SIGCONT), rejoins and gets its partitions again: it must write nothing of what it held
    (another owned it since) and continue from the changelog, not from its stale copy."""
    run, first_port, second_port = probe_run, free_port(), free_port()
    everything = set(range(engine_probe.PARTITIONS))

    def answered() -> int:
        return len({m.headers[2][1] for m in asyncio.run(read_all(kafka_bootstrap, f"{run}.out"))})

    def split() -> bool:
        first_owns, second_owns = owned_by(first_port), owned_by(second_port)
        return bool(first_owns and second_owns) and first_owns | second_owns == everything

    asyncio.run(produce_inputs(kafka_bootstrap, codec, run, range(0, 100)))
    first = start_probe(kafka_bootstrap, run, first_port, tmp_path)
    second = None
    try:
        wait_until(lambda: owned_by(first_port) == everything, 60, "the first probe ready")
        wait_until(lambda: answered() >= 100, 60, "the first 100 answered")
        second = start_probe(kafka_bootstrap, run, second_port, tmp_path, PROBE_INSTANCE="2")
        wait_until(split, 60, "the partitions split between the two probes")
        first.send_signal(signal.SIGSTOP)  # no heartbeat: put out of the group after 6 s
        wait_until(lambda: owned_by(second_port) == everything, 60, "the second owning all")
        asyncio.run(produce_inputs(kafka_bootstrap, codec, run, range(100, 200)))
        wait_until(lambda: answered() >= 200, 60, "the next 100 answered by the second")
        first.send_signal(signal.SIGCONT)
        wait_until(split, 60, "the first back in the group")
        asyncio.run(produce_inputs(kafka_bootstrap, codec, run, range(200, 300)))

        def all_committed() -> bool:
            done = asyncio.run(committed(kafka_bootstrap, f"boomerang-{run}", f"{run}.in"))
            return sum(done.values()) == 300

        wait_until(all_committed, 120, "every input committed")
    finally:
        first.send_signal(signal.SIGCONT)
        stop(first, signal.SIGTERM)
        if second is not None:
            stop(second, signal.SIGTERM)
    assert applied_state(kafka_bootstrap, run) == input_offsets(kafka_bootstrap, run)


def test_a_record_still_being_handled_holds_back_the_commit_of_its_partition(
    kafka_bootstrap: str, codec: AvroCodec, probe_run: str
):
    run = probe_run

    async def scenario() -> tuple[dict[int, int], dict[int, int]]:
        # every record on one partition; the record of the held key waits for `release`
        held, others = KEYS[0], KEYS[1:8]
        release = asyncio.Event()
        handled: list[str] = []

        async def handler(incoming: Incoming) -> list:
            if incoming.return_id == held and not release.is_set():
                await release.wait()
                raise TransientFailure("the partner was down")  # retried once released
            handled.append(incoming.return_id)
            return [engine_probe.answer(incoming)]

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        for number, key in enumerate([others[0], held, *others[1:]]):
            record = engine_probe.input_record(key, number)
            value = codec.encode("SagaRetryRequested", record)
            await producer.send_and_wait(f"{run}.in", value=value, key=key.encode(), partition=0)
        await producer.stop()

        loop, records = in_process_loop(kafka_bootstrap, codec, run, handler)
        await loop.start()
        running = asyncio.create_task(loop.run())
        try:
            deadline = time.monotonic() + 30
            while len(handled) < len(others) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # several checkpoints
            while_held = await committed(kafka_bootstrap, f"boomerang-{run}", f"{run}.in")
            release.set()
            deadline = time.monotonic() + 30
            while held not in handled and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            after = await committed(kafka_bootstrap, f"boomerang-{run}", f"{run}.in")
        finally:
            await loop.stop()
            running.cancel()
            await records.stop()
        return while_held, after

    while_held, after = asyncio.run(scenario())
    assert while_held[0] == 1  # the first record is done; the held second blocks the rest
    assert after[0] == 8  # released: everything committed


class FileLedger:
    """Effects and the input offsets that led to them, written together and atomically (as a
    database transaction would): the offset store of a service that keeps its offsets with
    its effects."""

    def __init__(self, path: Path) -> None:
        self.path = path
        saved = orjson.loads(path.read_bytes()) if path.exists() else {}
        self.effects: dict[str, int] = saved.get("effects", {})
        self.positions: dict[str, int] = saved.get("positions", {})

    def apply(self, incoming: Incoming) -> None:
        self.effects[incoming.event_id] = self.effects.get(incoming.event_id, 0) + 1
        self.positions[f"{incoming.topic}:{incoming.partition}"] = incoming.offset + 1
        staged = self.path.with_suffix(".staged")
        staged.write_bytes(orjson.dumps({"effects": self.effects, "positions": self.positions}))
        os.replace(staged, self.path)

    async def starting_positions(self, partitions: list[TopicPartition]) -> dict:
        return {
            tp: self.positions[f"{tp.topic}:{tp.partition}"]
            for tp in partitions
            if f"{tp.topic}:{tp.partition}" in self.positions
        }

    async def commit(self, consumer: AIOKafkaConsumer, offsets: dict) -> None:
        """Nothing: the offsets were stored with the effects."""


def test_a_loop_with_its_offsets_kept_beside_its_effects_starts_where_they_say(
    kafka_bootstrap: str, codec: AvroCodec, probe_run: str, tmp_path: Path
):
    run, store = probe_run, tmp_path / "ledger.json"

    async def run_until(total: int) -> int:
        ledger = FileLedger(store)
        handled = 0

        async def handler(incoming: Incoming) -> list:
            nonlocal handled
            handled += 1
            ledger.apply(incoming)
            return []

        loop, records = in_process_loop(kafka_bootstrap, codec, run, handler, offsets=ledger)
        await loop.start()
        running = asyncio.create_task(loop.run())
        deadline = time.monotonic() + 60
        while len(ledger.effects) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        loop.request_stop()
        await running
        await loop.stop()
        await records.stop()
        return handled

    asyncio.run(produce_inputs(kafka_bootstrap, codec, run, range(30)))
    first = asyncio.run(run_until(30))
    asyncio.run(produce_inputs(kafka_bootstrap, codec, run, range(30, 60)))
    second = asyncio.run(run_until(60))

    # the group never committed an offset: only the stored positions kept the second loop
    # from reading the first thirty again
    assert (
        sum(asyncio.run(committed(kafka_bootstrap, f"boomerang-{run}", f"{run}.in")).values()) == 0
    )
    assert (first, second) == (30, 30)
    assert sorted(set(FileLedger(store).effects.values())) == [1]
