"""docker-compose.yml describes the production-like deployment (structure checked here;
`docker compose config` runs too where a Docker engine with compose exists)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.cli import SERVICES

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
PARTNERS = {"carrier", "psp", "psp-b", "marketplace"}
BOOMERANG = set(SERVICES) - PARTNERS


def test_every_service_and_both_partners_are_declared():
    assert set(SERVICES) <= set(COMPOSE["services"])
    assert {"kafka", "topics"} <= set(COMPOSE["services"])


def test_kafka_is_the_apache_image_in_kraft_mode():
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS" in env
    assert "healthcheck" in kafka


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_runs_the_same_command_as_locally(name):
    service = COMPOSE["services"][name]
    assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert (REPO / service["build"]["dockerfile"]).exists()
    assert service["command"] == ["run", name]
    assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


@pytest.mark.parametrize("name", sorted(BOOMERANG))
def test_services_wait_for_the_broker_and_the_topics(name):
    depends = COMPOSE["services"][name]["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["topics"]["condition"] == "service_completed_successfully"


def test_step_services_wait_for_their_partner():
    assert "carrier" in COMPOSE["services"]["pickup"]["depends_on"]
    assert "psp" in COMPOSE["services"]["refund"]["depends_on"]


def test_topics_job_runs_the_bootstrapper_once():
    topics = COMPOSE["services"]["topics"]
    assert topics["command"] == ["topics"]
    assert topics["restart"] == "no"


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    info = subprocess.run(["docker", "info"], capture_output=True, check=False)
    return probe.returncode == 0 and info.returncode == 0


@pytest.mark.skipif(
    not _compose_available(), reason="no Docker engine with compose on this machine"
)
def test_docker_compose_config_accepts_the_file():
    result = subprocess.run(
        ["docker", "compose", "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_services_listen_on_all_interfaces_inside_containers():
    for name in sorted(BOOMERANG):
        assert COMPOSE["services"][name]["environment"]["BOOMERANG_BIND_HOST"] == "0.0.0.0"
    assert COMPOSE["services"]["carrier"]["environment"]["CARRIER_HOST"] == "0.0.0.0"
    assert COMPOSE["services"]["psp"]["environment"]["PSP_HOST"] == "0.0.0.0"


def test_partner_urls_match_the_partners_ports():
    env = COMPOSE["services"]["pickup"]["environment"]
    assert env["CARRIER_URL"].endswith(
        ":" + COMPOSE["services"]["carrier"]["environment"]["CARRIER_PORT"]
    )
    assert env["PSP_URL"].endswith(":" + COMPOSE["services"]["psp"]["environment"]["PSP_PORT"])
