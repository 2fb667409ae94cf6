"""The metrics stack of docker-compose: Prometheus scrapes every service at its port, and
the provisioned Grafana dashboard queries only metrics the services export (checked with
Prometheus's own promtool where installed: the scrape config, and every panel's query)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.cli import PARTNER_DOUBLES, SERVICES
from tests.support.exported_metrics import exported_series

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((REPO / "deploy/grafana/dashboards/boomerang.json").read_text())
PROMETHEUS = REPO / "deploy/prometheus/prometheus.yml"
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
PARTNERS = PARTNER_DOUBLES


def panels() -> list[dict]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_every_panel_queries_only_metrics_the_services_export():
    exported = exported_series()
    assert len(panels()) >= 25
    for title, expr in queries():
        named = set(re.findall(r"\bboomerang_[a-z0-9_]+", expr))
        assert named, f"{title}: names no Boomerang metric"
        assert named <= exported, (title, sorted(named - exported))


def test_the_dashboard_covers_loop_health_kpis_partners_settlement_and_risk():
    rows = [p["title"] for p in DASHBOARD["panels"] if p["type"] == "row"]
    assert rows == ["Loop health", "After-sales KPIs", "Partners", "Settlement", "Risk"]
    everything = " ".join(expr for _, expr in queries())
    for kpi in (
        "boomerang_returns_started_total",
        "boomerang_orders_delivered_total",
        "boomerang_refund_request_to_money_seconds_bucket",
        "boomerang_refund_pickup_to_money_seconds_bucket",
        "boomerang_pickups_resolved_total",
        "boomerang_inspection_backlog_returns",
        "boomerang_compensations_started_total",
        "boomerang_refund_attempts_total",
        "boomerang_settlement_breaks",
        "boomerang_risk_decisions_total",
        "boomerang_risk_review_duration_seconds_bucket",
        "boomerang_consumer_lag_records",
        "boomerang_partner_call_duration_seconds_bucket",
    ):
        assert kpi in everything, kpi


def test_every_panel_reads_the_provisioned_data_source():
    source = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    for panel in panels():
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])


def test_panel_ids_are_unique_and_the_grid_is_24_wide():
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_prometheus_scrapes_every_service_at_its_port():
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}
    for name in sorted(set(SERVICES) - PARTNERS):
        port = importlib.import_module(SERVICES[name]).DEFAULT_PORT
        assert jobs[name] == {"names": [name], "type": "A", "port": port}, name


def test_compose_runs_prometheus_and_grafana_with_the_files_in_deploy():
    prometheus, grafana = COMPOSE["services"]["prometheus"], COMPOSE["services"]["grafana"]
    assert (
        "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in (prometheus["volumes"])
    )
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    provider = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/dashboards/boomerang.yml").read_text()
    )["providers"][0]
    mounted = f"./deploy/grafana/dashboards:{provider['options']['path']}:ro"
    assert mounted in grafana["volumes"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Prometheus's promtool")
def test_promtool_accepts_the_scrape_config():
    result = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Prometheus's promtool")
def test_promtool_parses_every_panel_query(tmp_path: Path):
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"boomerang:panel_query:{n}", "expr": expr}
                    for n, (_, expr) in enumerate(queries())
                ],
            }
        ]
    }
    path = tmp_path / "panel_queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
