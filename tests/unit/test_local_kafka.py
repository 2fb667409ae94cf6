"""The native broker launcher's pure parts: ports, config, pid-file safety (no Kafka needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.tools.local_kafka.broker import (
    LocalKafka,
    LocalKafkaSettings,
    default_base_port,
    pom_kafka_version,
)
from services.tools.local_kafka.kraft_config import server_properties as _server_properties
from services.tools.local_kafka.node_processes import is_ours as _is_ours


def _settings(tmp_path: Path, base_port: int = 30000) -> LocalKafkaSettings:
    return LocalKafkaSettings(
        version="4.4.0",
        base_port=base_port,
        run_dir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        log=lambda m: None,
    )


def test_two_checkouts_get_different_default_ports():
    assert default_base_port(Path("/work/a")) != default_base_port(Path("/work/b"))
    assert default_base_port(Path("/work/a")) == default_base_port(Path("/work/a"))
    assert default_base_port(Path("/x")) >= 20000
    assert default_base_port(Path("/x")) + 6 * 8 < 32768, "below the ephemeral port range"


def test_the_pom_pins_a_kafka_4_release():
    assert pom_kafka_version().startswith("4.")


def test_single_node_kraft_config(tmp_path: Path):
    props = dict(
        line.split("=", 1) for line in _server_properties(_settings(tmp_path), 1, 1).splitlines()
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:30004"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:30000,CONTROLLER://127.0.0.1:30004"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["auto.create.topics.enable"] == "false"


def test_three_node_config_replicates_three_ways(tmp_path: Path):
    props = dict(
        line.split("=", 1) for line in _server_properties(_settings(tmp_path), 2, 3).splitlines()
    )
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"].count("@127.0.0.1:") == 3
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:30001"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"


def test_a_pid_file_naming_a_dead_process_is_reported_stale(tmp_path: Path):
    kafka = LocalKafka(_settings(tmp_path))
    (tmp_path / "run" / "node-1").mkdir(parents=True)
    kafka.state_file.write_text('{"nodes": 1}')
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / "run" / "node-1" / "kafka.pid").write_text(finished.stdout.strip())
    [status] = kafka.statuses()
    assert status.stale_pid_file and not status.running


def test_a_live_process_that_is_not_our_broker_is_never_ours(tmp_path: Path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not _is_ours(sleeper.pid, tmp_path / "run" / "node-1")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_down_with_nothing_running_is_harmless(tmp_path: Path):
    kafka = LocalKafka(_settings(tmp_path))
    assert kafka.down() == []
    assert kafka.down(wipe=True) == []
