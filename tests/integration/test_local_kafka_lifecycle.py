"""`make kafka-up/down` semantics on a second, private native broker (own port and data dir):
up twice is harmless, down twice is harmless, a broker killed with SIGKILL is detected."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from services.tools.local_kafka.broker import (
    REPO_ROOT,
    LocalKafka,
    LocalKafkaSettings,
    default_base_port,
)
from tests.support.cli_process import run_python_module


@pytest.fixture
def private_broker(tmp_path: Path):
    env = {
        **os.environ,
        "BOOMERANG_KAFKA_DIR": str(tmp_path / "kafka-run"),
        "BOOMERANG_KAFKA_PORT": str(default_base_port() + 17 * 8 % 4000),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("NODES", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_python_module("services.tools.local_kafka", *args, env=env, timeout=180)

    settings = LocalKafkaSettings(
        version=LocalKafkaSettings.from_env().version,
        base_port=int(env["BOOMERANG_KAFKA_PORT"]),
        run_dir=tmp_path / "kafka-run",
        cache_dir=REPO_ROOT / ".cache",
        log=lambda m: None,
    )
    yield cli, LocalKafka(settings)
    cli("down", "--wipe")


def _pid(kafka: LocalKafka) -> int:
    return int((kafka.node_dir(1) / "kafka.pid").read_text())


def test_up_twice_down_twice_and_recovery_from_a_killed_broker(private_broker):
    cli, kafka = private_broker
    first = cli("up")
    assert first.returncode == 0, first.stderr
    address = first.stdout.strip()
    assert address == f"127.0.0.1:{kafka.settings.broker_port(1)}"
    pid = _pid(kafka)

    second = cli("up")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == address
    assert _pid(kafka) == pid, "a running broker is reused, not started twice"
    assert "started pid" not in second.stderr

    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "stale pid file" in cli("status").stdout

    third = cli("up")
    assert third.returncode == 0, third.stderr
    assert "left by a killed run" in third.stderr
    assert _pid(kafka) != pid

    assert cli("down").returncode == 0
    assert not any(s.running for s in kafka.statuses())
    again = cli("down")
    assert again.returncode == 0 and "stopped 0 broker" in again.stderr
