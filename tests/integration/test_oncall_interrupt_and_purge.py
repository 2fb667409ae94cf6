"""`boomerang replay` stopped by Ctrl-C says where it stopped and resumes there; `boomerang dlq
purge` deletes for good only with --execute and a reason, and audits what went. Real broker,
the CLI as a process."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import subprocess
import sys
import time
import uuid

from aiokafka import AIOKafkaProducer

from services.eventing.envelope import new_envelope
from services.eventing.event_publisher import producer_settings
from services.eventing.topics import SUPPORT_TICKETS
from services.tools.oncall.audit_trail import read_trail
from services.tools.oncall.dead_letter_topics import read_dead_letters
from services.tools.oncall.topic_reader import read_topic
from tests.support.cli_process import cli_env, run_cli
from tests.support.dead_letter_writer import write_dead_letters

TICKETS = SUPPORT_TICKETS.name


def boomerang(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    return run_cli(bootstrap, *args, timeout=120)


async def _tickets(bootstrap: str, codec, return_id: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        for index in range(count):
            record = {
                "envelope": new_envelope("TicketOpened", return_id, "test"),
                "ticket_id": f"T-{index}",
                "category": "interrupt-test",
                "summary": f"ticket {index}",
                "facts": {},
            }
            value = codec.encode("TicketOpened", record)
            await producer.send_and_wait(TICKETS, value, key=return_id.encode())
    finally:
        await producer.stop()


def replayed_copies(bootstrap: str, return_id: str) -> list:
    records = asyncio.run(read_topic(bootstrap, TICKETS, SUPPORT_TICKETS.partitions))
    return [
        m
        for m in records
        if m.key == return_id.encode() and any(k == "replay.operation.id" for k, _ in m.headers)
    ]


def test_ctrl_c_stops_a_replay_between_records_and_the_printed_command_resumes_it(
    catalogue_topics, codec
):
    return_id = f"RMA-CTRLC-{uuid.uuid4().hex[:8].upper()}"
    asyncio.run(_tickets(catalogue_topics, codec, return_id, 8))
    args = ["replay", "--topic", TICKETS, "--return-id", return_id]
    command = [sys.executable, "-m", "services.cli", *args, "--rate", "1", "--execute"]
    command += ["--reason", "interrupt test", "--json"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(catalogue_topics),
    )
    deadline = time.monotonic() + 60
    while not replayed_copies(catalogue_topics, return_id):  # publishing has begun
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    stopped = json.loads(out)
    assert stopped["outcome"] == "interrupted"
    published = stopped["result"]["published"]
    assert 1 <= published < 8
    resume = stopped["result"]["resume_with"]
    assert "--start-at" in resume
    [partition] = {r["partition"] for r in stopped["selected"]}
    next_offset = stopped["result"]["next_positions"][str(partition)]
    assert next_offset == stopped["selected"][published]["offset"]

    argv = shlex.split(resume)
    assert argv[0] == "boomerang" and "--execute" in argv  # the same command, to run as is
    rest = boomerang(catalogue_topics, *argv[1:])
    assert rest.returncode == 0, rest.stderr
    resumed = json.loads(rest.stdout)
    assert resumed["records"] == resumed["result"]["published"] == 8 - published
    assert resumed["selected"][0]["offset"] == next_offset
    sources = [
        dict(m.headers)["replay.source"] for m in replayed_copies(catalogue_topics, return_id)
    ]
    originals = {f"{TICKETS}/{r['partition']}/{r['offset']}".encode() for r in stopped["selected"]}
    assert sorted(sources) == sorted(originals)  # each of the 8 exactly once across both runs
    trail = [
        e
        for e in asyncio.run(read_trail(catalogue_topics))
        if (e.get("selection") or {}).get("return_ids") == [return_id]
    ]
    assert [e["outcome"] for e in trail] == ["interrupted", "completed"]


def test_a_purge_is_a_dry_run_until_executed_with_a_reason_and_its_audit_keeps_what_went(
    catalogue_topics,
):
    reason = f"purge-{uuid.uuid4().hex[:6]}"
    asyncio.run(write_dead_letters(catalogue_topics, TICKETS, reason, [b"\x00junk"] * 3, b"RMA-P"))
    dry = boomerang(catalogue_topics, "dlq", "purge", "--topic", TICKETS, "--json")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True and planned["by_reason"][reason] == 3
    assert len(asyncio.run(read_dead_letters(catalogue_topics, TICKETS))) == planned["letters"]

    refused = boomerang(catalogue_topics, "dlq", "purge", "--topic", TICKETS, "--execute")
    assert refused.returncode == 2 and "needs --reason" in refused.stderr

    done = boomerang(
        catalogue_topics,
        "dlq",
        "purge",
        "--topic",
        TICKETS,
        "--execute",
        "--reason",
        "junk from a test tool",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    purged = json.loads(done.stdout)
    assert purged["purged"] == planned["purged"] >= 3
    assert asyncio.run(read_dead_letters(catalogue_topics, TICKETS)) == []
    [audit] = [
        e
        for e in asyncio.run(read_trail(catalogue_topics))
        if e["operation_id"] == purged["operation_id"]
    ]
    assert audit["operation"] == "dlq.purge" and audit["reason"] == "junk from a test tool"
    assert audit["result"]["by_reason"][reason] == 3
    assert len(audit["result"]["positions"]) == purged["purged"]
