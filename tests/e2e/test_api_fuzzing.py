"""Property-based fuzzing of every operation of every running service, from the OpenAPI
document it serves (schemathesis's `st run`, as a user would run it, against the e2e stack).

Each service gets every phase (the documents' examples, coverage of the schemas' edges,
generated data valid and invalid, stateful sequences along the documents' links) and every
check: no 5xx, every status, content type, header and body as documented, invalid data
refused, valid data accepted, auth enforced. Settings: tests/e2e/schemathesis.toml; the
webhooks' signatures and the tally of answers: tests/support/fuzz_hooks.py.

The run goes last (`fuzzing` marker): the returns it creates are nobody else's business.
The summary table (operations × requests, server errors, failures) is printed at the end of
the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.tools.local_stack.stack import (
    FINANCE_TOKEN,
    OPERATOR_TOKENS,
    REVIEWER_TOKENS,
    STATION_TOKENS,
    LocalStack,
)
from tests.support.openapi_services import SERVICES

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
FUZZ_ROWS = pytest.StashKey[list[dict[str, Any]]]()
ST = Path(sys.executable).with_name("st")
FUZZ_PARALLEL = 3


def _support_token(stack: LocalStack) -> str:
    """A support agent's token from the marketplace: the front door's widest role (it may
    act on any return; a buyer's token would stop at another buyer's order)."""
    marketplace = stack.url("marketplace")
    answer = httpx.post(f"{marketplace}/support-agents/AGENT-fuzz/tokens", json={"ttl_s": 7200})
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def _environment(tally: Path, stack: LocalStack) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.support.fuzz_hooks",
        "FUZZ_TALLY_FILE": str(tally),
        "FUZZ_STATION_TOKEN": next(iter(STATION_TOKENS.values())),
        "FUZZ_REVIEWER_TOKEN": next(iter(REVIEWER_TOKENS.values())),
        "FUZZ_FINANCE_TOKEN": FINANCE_TOKEN,
        "FUZZ_OPERATOR_TOKEN": next(iter(OPERATOR_TOKENS.values())),
        "FUZZ_SUPPORT_TOKEN": _support_token(stack),
    }


@dataclass(frozen=True)
class FuzzRun:
    returncode: int
    output: str
    report: dict[str, Any]
    tally: dict[str, dict[str, int]]


def _fuzz(service: str, stack: LocalStack, work_dir: Path) -> FuzzRun:
    """One `st run` against the document `service` serves (its own process: schemathesis's
    worker count stays 1, see schemathesis.toml)."""
    tally_file, reports = work_dir / "tally.json", work_dir / "reports"
    url = stack.url(service.replace("_", "-"))
    run = subprocess.run(
        [
            str(ST),
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{url}/openapi.json",
            "--report",
            "json",
            "--report-dir",
            str(reports),
        ],
        env=_environment(tally_file, stack),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    report = json.loads(next(reports.glob("*.json")).read_text())
    return FuzzRun(run.returncode, run.stdout, report, json.loads(tally_file.read_text()))


@pytest.fixture(scope="module")
def fuzz_runs(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, FuzzRun]:
    """Every service fuzzed, FUZZ_PARALLEL services at a time (each run mostly waits for
    the service it calls: three at once took the whole run from ~5 to ~2 min here)."""
    with ThreadPoolExecutor(max_workers=FUZZ_PARALLEL) as pool:
        runs = {
            service: pool.submit(_fuzz, service, stack, tmp_path_factory.mktemp(service))
            for service in SERVICES
        }
        return {service: run.result() for service, run in runs.items()}


@pytest.mark.fuzzing
@pytest.mark.timeout(900)
@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_survives_fuzzing(
    service: str, fuzz_runs: dict[str, FuzzRun], request: pytest.FixtureRequest
) -> None:
    run = fuzz_runs[service]
    report, tally = run.report, run.tally
    row = {
        "service": service,
        "operations": report["operations"]["tested"],
        "generated": report["test_cases"]["generated"],
        "requests": sum(counts["requests"] for counts in tally.values()),
        "server_errors": sum(counts.get("5xx", 0) for counts in tally.values()),
        "failures": report["test_cases"]["unique_failures"],
        "errors": len(report["errors"]),
        "stateful": report["phases"]["stateful"]["status"],
        "fewest": min(tally.items(), key=lambda item: item[1]["requests"]),
    }
    request.config.stash.setdefault(FUZZ_ROWS, []).append(row)
    assert run.returncode == 0 and row["failures"] == 0 and row["errors"] == 0, run.output[-8000:]
    assert row["server_errors"] == 0, tally
    assert report["operations"]["tested"] == report["operations"]["selected"], report["operations"]


def fuzzing_summary(config: pytest.Config) -> list[str]:
    """The table printed at the end of the session (tests/e2e/conftest.py)."""
    rows = config.stash.get(FUZZ_ROWS, [])
    if not rows:
        return []
    lines = [
        f"{'service':<17}{'ops':>4}{'cases':>7}{'requests':>9}{'5xx':>5}{'failures':>9}"
        f"{'errors':>7}  stateful  fewest requests (operation)"
    ]
    for row in rows:
        label, counts = row["fewest"]
        lines.append(
            f"{row['service']:<17}{row['operations']:>4}{row['generated']:>7}{row['requests']:>9}"
            f"{row['server_errors']:>5}{row['failures']:>9}{row['errors']:>7}  "
            f"{row['stateful']:<8}  {counts['requests']} ({label})"
        )
    total = {
        key: sum(row[key] for row in rows)
        for key in ("operations", "generated", "requests", "server_errors", "failures", "errors")
    }
    lines.append(
        f"{'all':<17}{total['operations']:>4}{total['generated']:>7}{total['requests']:>9}"
        f"{total['server_errors']:>5}{total['failures']:>9}{total['errors']:>7}"
    )
    return lines
