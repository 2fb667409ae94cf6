"""docker-compose.yml describes the production-like deployment (structure checked here;
Debian's `docker-compose config` and `nginx -t` validate the file and the gateway's config
where installed: .ci/run installs them; `docker compose config` too where a Docker engine
with compose exists)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.cli import PARTNER_DOUBLES, SERVICES

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
PARTNERS = PARTNER_DOUBLES
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


@pytest.mark.parametrize("name", sorted(BOOMERANG))
def test_services_can_scale_no_host_port_or_container_name_of_their_own(name):
    service = COMPOSE["services"][name]
    assert "ports" not in service and "container_name" not in service


GATEWAY_CONF = REPO / "deploy" / "gateway" / "nginx.conf"
OWN_PAGES = {"/health", "/openapi.json"}  # each instance's own: not behind the gateway


def gateway_routes() -> list[tuple[str, str, str]]:
    """(match, path, upstream) of the gateway's locations ("=" exact, "~" regular
    expression, "" prefix)."""
    conf = GATEWAY_CONF.read_text()
    methods = dict(re.findall(r"^\s*(GET|HEAD|default)\s+([\w-]+:\d+);", conf, re.M))
    routes = []
    for match, path, body in re.findall(r"location\s+([=~]?)\s*(\S+)\s*\{([^}]*)\}", conf):
        if "$returns_api" in body:
            routes.append((match, path, f"GET {methods['GET']} POST {methods['default']}"))
        elif found := re.search(r"set \$api ([\w-]+:\d+);", body):
            routes.append((match, path, found.group(1)))
    return routes


def upstream_of(path: str, method: str) -> str | None:
    """As nginx picks: an exact location, else the first regular expression that matches,
    else the longest prefix."""
    routes = gateway_routes()
    exact = [r for r in routes if r[0] == "=" and r[1] == path]
    regex = [r for r in routes if r[0] == "~" and re.search(r[1], path)]
    prefix = sorted(
        (r for r in routes if r[0] == "" and path.startswith(r[1])), key=lambda r: -len(r[1])
    )
    for _, _, upstream in (*exact, *regex, *prefix):
        if upstream.startswith("GET "):
            _, get, _, post = upstream.split()
            return get if method in ("get", "head") else post
        return upstream
    return None


def test_the_gateway_sends_every_documented_operation_to_its_service():
    for document in sorted(REPO.glob("services/*/openapi.json")):
        service = document.parent.name.replace("_", "-")
        port = json.loads(document.read_text())["servers"][0]["url"].rsplit(":", 1)[1]
        for path, operations in json.loads(document.read_text())["paths"].items():
            if path in OWN_PAGES:
                continue
            for method in operations:
                concrete = re.sub(r"\{[^}]+\}", "X-1", path)
                assert upstream_of(concrete, method) == f"{service}:{port}", (method, path)


def test_the_gateway_publishes_the_one_host_port():
    gateway = COMPOSE["services"]["gateway"]
    assert gateway["ports"] == ["8000:8000"]
    assert "./deploy/gateway/nginx.conf:/etc/nginx/nginx.conf:ro" in gateway["volumes"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose")
def test_debians_docker_compose_validates_the_file():
    result = subprocess.run(
        ["docker-compose", "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("nginx") is None, reason="Debian's nginx")
def test_nginx_accepts_the_gateways_config(tmp_path: Path):
    (tmp_path / "logs").mkdir()
    result = subprocess.run(
        [
            "nginx",
            "-t",
            "-p",
            str(tmp_path),
            "-c",
            str(GATEWAY_CONF),
            "-g",
            f"pid {tmp_path}/nginx.pid; error_log stderr;",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
