"""The whole system as OS processes on the test broker: partner doubles, six services and
settlement (on a PostgreSQL database of the session's own)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.policy_files.loader import DEFAULT_POLICY_DIR
from services.tools.local_postgres.databases import fresh_database
from services.tools.local_stack.stack import LocalStack
from tests.e2e.test_api_fuzzing import fuzzing_summary

# Short retries and deadlines, so failure paths resolve within a test.
SAGA_ENV = {
    "SAGA_MAX_TRIES": "4",
    "SAGA_BACKOFF_BASE_MS": "200",
    "SAGA_BACKOFF_CAP_MS": "2000",
    "SAGA_BOOKING_DEADLINE_MS": "20000",
    "SAGA_COLLECTION_DEADLINE_MS": "120000",
    "SAGA_INSPECTION_DEADLINE_MS": "300000",
    "SAGA_INTAKE_DEADLINE_MS": "15000",
    "SAGA_REFUND_DEADLINE_MS": "15000",
    "SAGA_SETTLEMENT_DEADLINE_MS": "30000",
    "SAGA_COMPENSATION_DEADLINE_MS": "15000",
    # finished sagas are archived 40 s after their last change (test_scale_out): every
    # later look at a finished return in these tests reads the archive or the table
    "SAGA_FINISHED_RETENTION_MS": "40000",
    "BOOMERANG_RETRY_ATTEMPTS": "3",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fuzzing run goes last: what it creates is nobody else's business."""
    items.sort(key=lambda item: item.get_closest_marker("fuzzing") is not None)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = fuzzing_summary(config)
    if lines:
        terminalreporter.section("fuzzing: every operation of every service")
        for line in lines:
            terminalreporter.write_line(line)


RELOAD_MARKET = "NL"  # a market only the policy-reload test uses and changes


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/policies the services read, plus a market the reload test edits."""
    copy = Path(tmp_path_factory.mktemp("policies")) / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, copy)
    market = (copy / "DE" / "market.yaml").read_text().replace("market: DE", "market: NL")
    (copy / RELOAD_MARKET).mkdir()
    (copy / RELOAD_MARKET / "market.yaml").write_text(market)
    return copy


@pytest.fixture(scope="session")
def ledger_database(postgres_server_url: str) -> Iterator[str]:
    """The e2e stack's settlement ledger: a database of the session's own."""
    with fresh_database(postgres_server_url, "boomerang_e2e_") as url:
        yield url


@pytest.fixture(scope="session")
def stack(
    catalogue_topics: str,
    policy_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    ledger_database: str,
) -> Iterator[LocalStack]:
    run_dir = Path(tmp_path_factory.mktemp("stack"))
    local = LocalStack(
        catalogue_topics,
        run_dir,
        carrier_callback_delay_ms=1000,
        # per-event lines are DEBUG (none at INFO in the hot path): the logs of a test run
        # carry every event's return_id and event_id
        extra_env={
            **SAGA_ENV,
            "BOOMERANG_POLICY_DIR": str(policy_dir),
            # SLAs of seconds: a case escalates within a test (test_cases.py)
            "CASES_TERMS_FILE": str(Path(__file__).with_name("case_terms.yaml")),
            "CASES_SCAN_S": "1",
            "BOOMERANG_LOG_LEVEL": "DEBUG",
            # the session's broker keeps what earlier stacks left unprocessed (the chaos
            # run's returns): the coordinator's backlog would refuse these tests' returns;
            # admission control has a test of its own (test_faults), with its own limit
            "BOOMERANG_ADMISSION_MAX_WAIT_S": "0",
            "BOOMERANG_ADMISSION_MAX_PIPELINE_WAIT_S": "0",
        },
        log=lambda m: None,
        # settlement books this session's records from now on
        database_url=ledger_database,
        ledger_start_ms=int(time.time() * 1000),
    )
    try:
        local.start_all()
        yield local
    finally:
        local.stop_all()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client
