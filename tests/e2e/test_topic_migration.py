"""Moving a running deployment from 4 to 12 partitions (`boomerang topics migrate`), on a
broker of its own: returns finished (and archived) before the move are still shown after
it, returns waiting for inspection continue to their refund from the migrated state, a new
return goes through, and no refund is issued twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.eventing.avro_codec import AvroCodec
from services.eventing.topics import REFUND_EVENTS, RETURNS_EVENTS, SAGA_CHANGELOG
from services.tools.local_kafka.broker import LocalKafka, LocalKafkaSettings, default_base_port
from services.tools.local_stack.stack import LocalStack
from services.tools.oncall.topic_reader import read_topic
from tests.e2e.conftest import SAGA_ENV
from tests.e2e.scenario import create_return, post_scan_when_ready, scan, wait_for_status
from tests.support.cli_process import REPO_ROOT, cli_env, run_python_module

OLD, NEW = 4, 12
SLOT_PORT = default_base_port() + 8 * 12  # a broker of its own: its topics are deleted


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[str]:
    kafka = LocalKafka(
        LocalKafkaSettings(
            version=LocalKafkaSettings.from_env().version,
            base_port=SLOT_PORT,
            run_dir=tmp_path / "kafka",
            cache_dir=REPO_ROOT / ".cache",
            log=lambda m: None,
        )
    )
    kafka.down(wipe=True)
    try:
        yield kafka.up(nodes=1, timeout=180)
    finally:
        kafka.down(wipe=True)


def boomerang(bootstrap: str, *args: str, partitions: int | None = None):
    env = cli_env(bootstrap)
    env.pop("BOOMERANG_TOPIC_PARTITIONS", None)
    if partitions is not None:
        env["BOOMERANG_TOPIC_PARTITIONS"] = str(partitions)
    return run_python_module("services.cli", *args, env=env, timeout=600)


def stack_on(bootstrap: str, run_dir: Path, partitions: int) -> LocalStack:
    env = {
        **SAGA_ENV,
        "SAGA_FINISHED_RETENTION_MS": "5000",  # finished returns are archived before the move
        "BOOMERANG_ADMISSION_MAX_WAIT_S": "0",
        "BOOMERANG_ADMISSION_MAX_PIPELINE_WAIT_S": "0",
    }
    if partitions != NEW:
        env["BOOMERANG_TOPIC_PARTITIONS"] = str(partitions)
    return LocalStack(
        bootstrap, run_dir, carrier_callback_delay_ms=500, extra_env=env, log=lambda m: None
    )


def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(names)
            return {t["topic"]: len(t["partitions"]) for t in described}
        finally:
            await admin.close()

    return asyncio.run(describe())


def refunds_issued(bootstrap: str, codec: AvroCodec) -> Counter[str]:
    records = asyncio.run(read_topic(bootstrap, REFUND_EVENTS.name, NEW))
    issued: Counter[str] = Counter()
    for record in records:
        decoded = codec.decode(record.value)
        if decoded.name == "RefundIssued":
            issued[decoded.record["envelope"]["return_id"]] += 1
    return issued


@pytest.mark.long  # ~2 min: `make test-long` (.ci/run), not `make test`
def test_a_running_deployment_moves_from_4_to_12_partitions_and_carries_on(
    own_broker: str, tmp_path: Path, codec: AvroCodec
):
    bootstrap = own_broker
    made = boomerang(bootstrap, "topics", partitions=OLD)
    assert made.returncode == 0, made.stdout + made.stderr
    assert partition_counts(bootstrap, [RETURNS_EVENTS.name])[RETURNS_EVENTS.name] == OLD

    run_dir = tmp_path / "stack"
    before = stack_on(bootstrap, run_dir, OLD)
    http = httpx.Client(timeout=10.0)
    try:
        before.start_all()
        finished = [create_return(http, before) for _ in range(3)]
        waiting = [create_return(http, before) for _ in range(3)]
        for return_id in finished:
            body, headers = scan(return_id)
            assert post_scan_when_ready(http, before, body, headers, 60).status_code == 202
        for return_id in finished:
            wait_for_status(http, before, return_id, {"COMPLETED"}, timeout=120)
        for return_id in waiting:
            wait_for_status(http, before, return_id, {"AWAITING_INSPECTION"}, timeout=120)
        for return_id in finished:  # archived: its hot state left the sagas table
            assert wait_archived(http, before, return_id)["status"] == "COMPLETED"
    finally:
        before.stop_all()

    looked = boomerang(bootstrap, "topics", "migrate", "--check")
    assert looked.returncode == 0, looked.stdout + looked.stderr
    plan = json.loads(looked.stdout.strip().splitlines()[-1])
    assert RETURNS_EVENTS.name in plan["to_migrate"] and plan["not_drained"] == 0

    moved = boomerang(
        bootstrap, "topics", "migrate", "--yes", "--plan-file", str(tmp_path / "plan.json")
    )
    assert moved.returncode == 0, moved.stdout + moved.stderr
    report = json.loads(moved.stdout.strip().splitlines()[-1])
    print("migration report:", json.dumps(report))
    assert report["migrated"][RETURNS_EVENTS.name] > 0, moved.stdout
    counts = partition_counts(bootstrap, [RETURNS_EVENTS.name, SAGA_CHANGELOG.name])
    assert counts == {RETURNS_EVENTS.name: NEW, SAGA_CHANGELOG.name: NEW}
    assert not (tmp_path / "plan.json").exists()
    assert boomerang(bootstrap, "topics", "--check").returncode == 0  # no drift at 12

    after = stack_on(bootstrap, run_dir, NEW)
    try:
        after.start_all()
        for return_id in finished:
            shown = wait_for_status(http, after, return_id, {"COMPLETED"}, timeout=60)
            assert shown.get("archived") is True
        for return_id in waiting:
            wait_for_status(http, after, return_id, {"AWAITING_INSPECTION"}, timeout=60)
            body, headers = scan(return_id)
            assert post_scan_when_ready(http, after, body, headers, 60).status_code == 202
        newcomer = create_return(http, after)
        body, headers = scan(newcomer)
        assert post_scan_when_ready(http, after, body, headers, 120).status_code == 202
        for return_id in [*waiting, newcomer]:
            wait_for_status(http, after, return_id, {"COMPLETED"}, timeout=120)
    finally:
        after.stop_all()
        http.close()

    issued = refunds_issued(bootstrap, codec)
    assert {r: issued[r] for r in [*finished, *waiting, newcomer]} == dict.fromkeys(
        [*finished, *waiting, newcomer], 1
    )


def wait_archived(http: httpx.Client, stack: LocalStack, return_id: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        shown = http.get(f"{stack.url('coordinator')}/returns/{return_id}").json()
        if shown.get("archived"):
            return shown
        assert time.monotonic() < deadline, f"{return_id} never archived: {shown}"
        time.sleep(0.5)
